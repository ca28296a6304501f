"""A worker process hosting several subscribing replicas as asyncio tasks, and its parent side.

Why: fan-out and propagation need many subscribers, but a Python process per replica
would measure process scheduling on two cores rather than the code. A few of these
workers each host ``--count`` replicas, every one with its own Redis connection, and
record when each message was *applied* (``perf_counter_ns``; CLOCK_MONOTONIC is
system-wide on Linux, so the parent compares it with its own publish times).

Kinds:

* ``raw``: a bare redis-py subscriber that only notes the arrival of each message
  (the limit);
* ``ours``: the real subscriber + cache of :mod:`service` (see :mod:`bench.ours`),
  warmed from MongoDB, with the time each change became visible in the cache.

Protocol on the pipes: the worker prints ``READY`` once every replica is subscribed
(and warm), then on a ``STOP`` line from stdin prints one JSON line with what it saw
and exits. Anything on stderr goes to a log file the parent shows if the worker fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import redis.asyncio as aioredis

from bench.common import BenchError, tail


def seq_of(raw: bytes) -> int:
    """The seq of a wire message (it always starts with ``{"seq":N,``)."""
    return int(raw[7 : raw.index(b",", 7)])


async def _raw_replica(url: str, channel: str, seen: dict[int, int], ready: asyncio.Event) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub: Any = client.pubsub()  # redis-py leaves PubSub untyped
    clock = time.perf_counter_ns
    try:
        await pubsub.subscribe(channel)
        while await pubsub.get_message(timeout=5.0) is None:
            pass  # the subscribe confirmation
        ready.set()
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "message":
                seen[seq_of(message["data"])] = clock()
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _host(args: argparse.Namespace) -> dict[str, Any]:
    readies = [asyncio.Event() for _ in range(args.count)]
    records: list[dict[int, int]] = [{} for _ in range(args.count)]
    extra: list[dict[str, Any]] = [{} for _ in range(args.count)]
    async with asyncio.TaskGroup() as group:
        tasks: list[asyncio.Task[Any]] = []
        if args.kind == "raw":
            for i in range(args.count):
                coro = _raw_replica(args.redis, args.channel, records[i], readies[i])
                tasks.append(group.create_task(coro, name=f"raw-replica-{i}"))
        else:
            from bench import ours

            hosts = [
                ours.ReplicaHost(
                    redis_url=args.redis,
                    namespace=args.namespace,
                    mongo_uri=args.mongo,
                    database=args.database,
                    collection=args.collection,
                    instance_id=f"{args.name}-{i}",
                    applied=records[i],
                )
                for i in range(args.count)
            ]
            for i, host in enumerate(hosts):
                tasks.append(group.create_task(host.run(readies[i]), name=f"replica-{i}"))
        async with asyncio.timeout(args.ready_timeout):
            for event in readies:
                await event.wait()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if args.kind == "ours":
            for i, host in enumerate(hosts):
                extra[i] = await host.report()
        for task in tasks:
            task.cancel()
    return {
        "replicas": [
            {"applied": {str(k): v for k, v in rec.items()}, **more}
            for rec, more in zip(records, extra, strict=True)
        ]
    }


def _worker_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas")
    parser.add_argument("--kind", choices=["raw", "ours"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", default="")
    parser.add_argument("--namespace", default="scc")
    parser.add_argument("--mongo", default="")
    parser.add_argument("--database", default="ingestion")
    parser.add_argument("--collection", default="source_configs")
    parser.add_argument("--name", default="bench")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument("--report", required=True, help="file to write the final report to")
    args = parser.parse_args(argv)
    if args.kind == "ours":
        from service.applying import settle_heap_after_first_load
        from shared.telemetry import configure_logging

        configure_logging(fmt="json", level="warning")  # stderr; stdout carries the protocol
        settle_heap_after_first_load()  # as python -m service does
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_host(args))
    # The report can be megabytes: it goes to a file (a long line on a pipe was seen cut
    # short at exit), and stdout only says it is complete.
    report = Path(args.report)
    partial = report.with_suffix(".partial")
    partial.write_bytes(orjson.dumps(result))
    partial.replace(report)
    print("DONE", flush=True)


# --------------------------------------------------------------------------- parent side


class WorkerSet:
    """Several worker processes of this module, started together and stopped together."""

    def __init__(self, log_dir: Path, *, module: str = "bench.replicas") -> None:
        self._log_dir = log_dir
        self._module = module  # any worker module speaking this protocol (--kind, --count…)
        self._procs: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def start(self, kind: str, counts: Sequence[int], **options: str) -> None:
        """Start one worker per entry of ``counts`` (replicas each) and wait for READY."""
        base = len(self._procs)
        for n, count in enumerate(counts):
            index = base + n
            log_path = self._log_dir / f"worker-{kind}-{index}.log"
            report = log_path.with_suffix(".json")
            report.unlink(missing_ok=True)
            argv = [
                sys.executable,
                "-m",
                self._module,
                "--kind",
                kind,
                "--count",
                str(count),
                "--name",
                f"{kind}{index}",
                "--report",
                str(report),
            ]
            for key, value in options.items():
                argv += [f"--{key.replace('_', '-')}", value]
            err = _open_log(log_path)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            finally:
                err.close()  # the child has its own descriptor
            self._procs.append((proc, log_path))
        for proc, log_path in self._procs[base:]:
            await self._expect_ready(proc, log_path)

    async def _expect_ready(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(90):
                line = await proc.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"READY":
            raise BenchError(
                f"replica worker did not become ready (got {line[:200]!r}); log "
                f"{log_path}:\n{tail(log_path)}"
            )

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [proc.pid for proc, _ in self._procs]

    async def ask(self, line: str, within_s: float = 60.0) -> list[dict[str, Any]]:
        """Send ``line`` to every worker; the one JSON line each answers, in order."""
        for proc, _ in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(line.encode() + b"\n")
            await proc.stdin.drain()
        answers: list[dict[str, Any]] = []
        for proc, log_path in self._procs:
            assert proc.stdout is not None
            async with asyncio.timeout(within_s):
                reply = await proc.stdout.readline()
            try:
                answers.append(orjson.loads(reply))
            except orjson.JSONDecodeError:
                raise BenchError(
                    f"worker answered {reply[:80]!r} to {line!r}; log {log_path}:\n{tail(log_path)}"
                ) from None
        return answers

    async def stop(self, within_s: float = 60.0) -> list[dict[str, Any]]:
        """Tell every worker to stop; the replica records of all of them, in order."""
        for proc, _ in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(b"STOP\n")
            await proc.stdin.drain()
        replicas: list[dict[str, Any]] = []
        for proc, log_path in self._procs:
            assert proc.stdout is not None
            async with asyncio.timeout(within_s):
                line = await proc.stdout.readline()
                await proc.wait()
            report = log_path.with_suffix(".json")
            if proc.returncode != 0 or line.strip() != b"DONE" or not report.exists():
                raise BenchError(
                    f"replica worker failed (status {proc.returncode}, said {line[:80]!r}); "
                    f"log {log_path}:\n{tail(log_path)}"
                )
            replicas.extend(orjson.loads(report.read_bytes())["replicas"])
        self._procs.clear()
        return replicas

    async def kill(self) -> None:
        """Kill whatever is still running (cleanup after a failure)."""
        for proc, _ in self._procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        self._procs.clear()


def _open_log(path: Path) -> IO[bytes]:
    return open(path, "ab")


def spread(total: int, workers: int) -> list[int]:
    """``total`` replicas over at most ``workers`` processes, as evenly as possible."""
    workers = max(1, min(workers, total))
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


if __name__ == "__main__":
    _worker_main()
