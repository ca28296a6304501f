"""Run the double as its own process, for end-to-end tests that start real processes.

``python -m tests.support.mongo_double --port 0 [--seed docs.json]`` prints exactly one line
``MONGO_DOUBLE_READY <uri>`` (flushed) once it listens and the seed is loaded, then serves
until SIGTERM or SIGINT, when it closes every connection and exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from bson import json_util

from .server import DoubleServer
from .state import DEFAULT_COLLECTION, DEFAULT_DB, DoubleConfig


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.mongo_double",
        description="MongoDB 7.0 replica-set primary wire double (see the package docstring).",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--advertise-host", default=None, help="host name reported in hello")
    parser.add_argument("--set-name", default="rs0", help="replica set name (default rs0)")
    parser.add_argument("--seed", type=Path, default=None, help="extended-JSON array of documents")
    parser.add_argument("--db", default=DEFAULT_DB, help="database the seed goes to")
    parser.add_argument(
        "--collection", default=DEFAULT_COLLECTION, help="collection the seed goes to"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    config = DoubleConfig(args.host, args.port, args.set_name, args.advertise_host)
    server = DoubleServer(config)
    if args.seed is not None:
        try:
            docs = json_util.loads(args.seed.read_text())
        except (OSError, ValueError) as exc:
            print(f"mongo_double: cannot read --seed {args.seed}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
            print(
                f"mongo_double: --seed {args.seed} must hold a JSON array of objects",
                file=sys.stderr,
            )
            return 2
        for doc in docs:
            server.state.store.insert(args.db, args.collection, doc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"mongo_double: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"MONGO_DOUBLE_READY {server.uri}", flush=True)
    await stop.wait()
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_serve(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
