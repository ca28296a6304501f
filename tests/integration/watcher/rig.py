"""Helpers for watcher integration tests: in-process watchers on a real Redis + the double.

:func:`run_watcher` builds a :class:`watcher.running.Watcher` exactly as ``python -m
watcher`` does (real ``AsyncMongoClient``, real Redis client, real adapters) and runs it in
a named task that is stopped and reaped on exit. :class:`Collector` records every message
published on the invalidation channel, like a replica would see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from shared.batches import decode_batch
from shared.clients import make_mongo, make_redis
from shared.keys import Keys
from shared.messages import Message
from shared.settings import Settings, load_settings
from shared.telemetry import make_telemetry
from watcher.mongo_source import MongoChangeSource
from watcher.running import Watcher
from watcher.watching import ChangeSource

ROOT = Path(__file__).resolve().parents[3]
NAMESPACE = "wtest"
KEYS = Keys(NAMESPACE)
DB, COLLECTION = "ingestion", "source_configs"


def settings_for(
    redis_url: str, mongo_uri: str, instance_id: str, *, ttl_ms: int = 600, **timing: int
) -> Settings:
    """Short timings so tests run in well under a second per failover."""
    return load_settings(
        mongo={"uri": mongo_uri, "database": DB, "collection": COLLECTION, "timeout_ms": 2000},
        redis={"url": redis_url, "namespace": NAMESPACE},
        timing={
            "leader_ttl_ms": ttl_ms,
            "heartbeat_interval_ms": 100,
            "max_await_ms": 50,
            "token_save_interval_ms": 50,
            **timing,
        },
        http={"host": "127.0.0.1", "port": 0},
        process={"instance_id": instance_id, "log_format": "console"},
    )


@dataclass
class Running:
    """A watcher running in this event loop."""

    watcher: Watcher
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def shutdown(self) -> None:
        """Graceful stop (what SIGTERM does) and wait for ``run`` to return."""
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@asynccontextmanager
async def run_watcher(
    settings: Settings, *, source: ChangeSource | None = None
) -> AsyncIterator[Running]:
    """Build and run a watcher; stop it (if still running) and close its clients on exit.

    With ``source`` (a fake change source) no MongoDB client is made.
    """
    redis = make_redis(settings.redis, client_name="itest-watcher", socket_timeout=1.0)
    mongo = None if source is not None else make_mongo(settings.mongo, appname="itest-watcher")
    telemetry = make_telemetry(service_name="scc-watcher", instance_id="itest")
    if mongo is not None:
        source = MongoChangeSource(
            mongo[settings.mongo.database][settings.mongo.collection],
            max_await_ms=settings.timing.max_await_ms,
        )
    assert source is not None
    watcher = Watcher(settings=settings, redis=redis, source=source, telemetry=telemetry)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop), name=f"itest.{settings.process.instance_id}")
    running = Running(watcher, task, stop)
    try:
        yield running
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        await redis.aclose()
        if mongo is not None:
            await mongo.close()
        telemetry.shutdown()


@dataclass
class Collector:
    """Every message on ``{ns}:invalidations`` since :meth:`start`, decoded."""

    url: str
    messages: list[Message] = field(default_factory=list)
    #: Pub/sub messages but heartbeats received (a batch counts once, its changes each).
    received: int = 0
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self.url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(KEYS.invalidations)
            self._subscribed.set()
            while not self._stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None:
                    batch = decode_batch(message["data"])
                    self.received += batch.first.kind != "heartbeat"
                    self.messages.extend(batch.changes)
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def start(self) -> Collector:
        """Subscribe (returns once subscribed)."""
        self._task = asyncio.create_task(self._run(), name="itest.collector")
        await asyncio.wait_for(self._subscribed.wait(), 5)
        return self

    async def close(self) -> None:
        """Unsubscribe and stop."""
        self._stop.set()
        if self._task is not None:
            await self._task

    def changes(self) -> list[Message]:
        """Everything but heartbeats."""
        return [m for m in self.messages if m.kind != "heartbeat"]

    def resyncs(self) -> list[str | None]:
        """Reasons of the ``resync`` messages, in order."""
        return [m.reason for m in self.messages if m.kind == "resync"]

    def keys(self, kind: str = "upsert") -> set[str]:
        """Keys of the messages of ``kind``."""
        return {m.key for m in self.messages if m.kind == kind and m.key is not None}


@asynccontextmanager
async def collecting(url: str) -> AsyncIterator[Collector]:
    """A started :class:`Collector`, closed on exit."""
    collector = await Collector(url).start()
    try:
        yield collector
    finally:
        await collector.close()


async def eventually(predicate: Callable[[], Any], within: float = 10.0) -> None:
    """Poll ``predicate`` until truthy or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def leader_of(*runs: Running, within: float = 5.0) -> Running:
    """The one watcher that leads (waits for one); fails if two lead at once."""
    deadline = time.monotonic() + within
    while True:
        leaders = [r for r in runs if r.watcher.leadership.is_leader]
        assert len(leaders) <= 1, "two watchers lead at once"
        if leaders:
            return leaders[0]
        assert time.monotonic() < deadline, "nobody leads"
        await asyncio.sleep(0.01)


def process_env(
    redis_url: str, mongo_uri: str, instance_id: str, *, port: int, **extra: str
) -> dict[str, str]:
    """The ``SCC_*`` environment of a ``python -m watcher`` child process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCC_")}
    return {
        **base,
        "SCC_MONGODB_URI": mongo_uri,
        "SCC_MONGODB_DATABASE": DB,
        "SCC_MONGODB_COLLECTION": COLLECTION,
        "SCC_MONGODB_TIMEOUT_MS": "2000",
        "SCC_REDIS_URL": redis_url,
        "SCC_NAMESPACE": NAMESPACE,
        "SCC_INSTANCE_ID": instance_id,
        "SCC_HTTP_HOST": "127.0.0.1",
        "SCC_HTTP_PORT": str(port),
        "SCC_LEADER_TTL_MS": "800",
        "SCC_HEARTBEAT_INTERVAL_MS": "100",
        "SCC_MAX_AWAIT_MS": "50",
        "SCC_TOKEN_SAVE_INTERVAL_MS": "50",
        "SCC_LOG_FORMAT": "json",
        **extra,
    }


@dataclass
class Child:
    """A ``python -m watcher`` process whose output goes to ``log``."""

    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> Child:
        """Start the process."""
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", *args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def port(self) -> int:
        """Its HTTP port."""
        return int(self.env["SCC_HTTP_PORT"])

    def send(self, sig: signal.Signals) -> None:
        """Signal the process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for exit; the status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill it if still running (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def output(self) -> str:
        """Everything it wrote."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        """Its JSON log lines, parsed."""
        events = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events
