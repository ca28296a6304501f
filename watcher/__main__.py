"""``python -m watcher`` / ``scc-watcher``: run one watcher, or ``--check`` one for a probe.

Run two or more for high availability: one leads (follows the change stream and
publishes), the others stand by and take over within the lease TTL.

Exit status: 0 after a clean stop (SIGTERM/SIGINT: finish the in-flight publish, save the
token, release the lease), 1 if a root task died or ``--check`` found no fresh heartbeat,
2 for a configuration error (one line naming the variable). A second signal, or a
shutdown that outlasts its grace period, cancels everything at once.

``--check`` reads this instance's heartbeat hash ``{ns}:watcher:{SCC_INSTANCE_ID}``; it only
means something when ``SCC_INSTANCE_ID`` is set to the id the running watcher uses (the
default id contains the pid and a random suffix), so without it ``--check`` exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import structlog
from pymongo.errors import ConfigurationError
from redis.exceptions import RedisError

import shared
from shared.clients import make_mongo, make_redis
from shared.entry import fail, or_exit
from shared.keys import Keys
from shared.settings import Settings, load_settings
from shared.status import WatcherStatus, status_ttl_seconds
from shared.telemetry import configure_logging, make_telemetry
from watcher.mongo_source import MongoChangeSource
from watcher.running import Watcher

PROGRAM = "scc-watcher"
log = structlog.get_logger("watcher")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=(
            "Follow the MongoDB source_configs change stream as the fenced leader of a group "
            "of watchers and publish every change to Redis. Configured by SCC_* environment "
            "variables (SCC_MONGODB_URI, SCC_REDIS_URL, SCC_NAMESPACE, SCC_INSTANCE_ID, "
            "SCC_LEADER_TTL_MS, SCC_HEARTBEAT_INTERVAL_MS, SCC_HTTP_HOST, SCC_HTTP_PORT, ...)."
        ),
        epilog="HTTP: /health/live, /health/ready, /metrics on SCC_HTTP_HOST:SCC_HTTP_PORT.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=(
            "exit 0 if this instance's heartbeat key in Redis is fresh, else 1 (for exec "
            "probes; requires SCC_INSTANCE_ID)"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {shared.__version__}")
    return parser


async def check(settings: Settings) -> int:
    """0 if ``{ns}:watcher:{id}`` exists and was updated within its TTL, else 1."""
    key = Keys(settings.redis.namespace).watcher(settings.process.instance_id)
    redis = make_redis(settings.redis, client_name=f"{PROGRAM}-check", socket_timeout=2.0)
    try:
        raw: dict[Any, Any] = await redis.hgetall(key)
    except (RedisError, OSError) as e:
        print(f"{PROGRAM}: check failed: Redis: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if not raw:
        print(f"{PROGRAM}: no heartbeat at {key}", file=sys.stderr)
        return 1
    status = WatcherStatus.from_hash(raw)
    age = None if status.updated_at is None else max(0.0, time.time() - status.updated_at)
    if age is None or age > status_ttl_seconds(settings.timing.heartbeat_interval_ms):
        print(f"{PROGRAM}: heartbeat at {key} is stale", file=sys.stderr)
        return 1
    print(f"ok: {status.role} epoch={status.epoch} updated {age:.1f}s ago")
    return 0


def shutdown_grace_seconds(settings: Settings) -> float:
    """How long a graceful stop may take before everything is cancelled."""
    timing = settings.timing
    return 5.0 + (timing.max_await_ms + timing.leader_ttl_ms) / 1000


async def serve(settings: Settings) -> int:
    """Run the watcher until SIGTERM/SIGINT; the process exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    instance_id = settings.process.instance_id
    try:
        mongo = make_mongo(settings.mongo, appname=PROGRAM)
    except ConfigurationError as e:
        fail(PROGRAM, f"configuration error: SCC_MONGODB_URI: {e}")
    telemetry = make_telemetry(service_name=PROGRAM, instance_id=instance_id)
    redis = make_redis(
        settings.redis,
        client_name=f"{PROGRAM}:{instance_id}",
        socket_timeout=min(5.0, max(0.5, settings.timing.leader_ttl_ms / 1000)),
    )
    collection = mongo[settings.mongo.database][settings.mongo.collection]
    watcher = Watcher(
        settings=settings,
        redis=redis,
        source=MongoChangeSource(collection, max_await_ms=settings.timing.max_await_ms),
        telemetry=telemetry,
    )
    run = asyncio.create_task(watcher.run(stop), name="watcher.main")

    grace: list[asyncio.TimerHandle] = []

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("signal received; stopping", signal=name)
            stop.set()
            seconds = shutdown_grace_seconds(settings)
            grace.append(loop.call_later(seconds, _cancel, run, "grace period over"))
        else:
            _cancel(run, f"second {name}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    log.info(
        "watcher starting",
        instance_id=instance_id,
        namespace=settings.redis.namespace,
        database=settings.mongo.database,
        collection=settings.mongo.collection,
        ttl_ms=settings.timing.leader_ttl_ms,
    )
    try:
        await run
        log.info("watcher stopped")
        return 0
    except asyncio.CancelledError:
        log.error("watcher cancelled before a clean stop")
        return 1
    except OSError as e:
        log.error(
            "cannot listen for HTTP; is SCC_HTTP_PORT free?",
            host=settings.http.host,
            port=settings.http.port,
            error=str(e),
        )
        return 1
    except Exception:
        log.exception("watcher failed")
        return 1
    finally:
        for handle in grace:
            handle.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await redis.aclose()
        await mongo.close()
        telemetry.shutdown()


def _cancel(task: asyncio.Task[None], why: str) -> None:
    if not task.done():
        log.warning("cancelling the watcher now", reason=why)
        task.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``scc-watcher``)."""
    args = _parser().parse_args(argv)
    settings = or_exit(PROGRAM, load_settings)
    configure_logging(fmt=settings.process.log_format, level=settings.process.log_level)
    if args.check:
        if "instance_id" not in settings.process.model_fields_set:
            fail(PROGRAM, "--check needs SCC_INSTANCE_ID (the id of the watcher to check)")
        raise SystemExit(asyncio.run(check(settings)))
    raise SystemExit(asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
