"""A fake deployment in a real redis-server: heartbeat hashes, lease, token, subscribers.

Everything is written the way the real processes write it (``shared.status`` hashes with
``HSET`` + ``EXPIRE status_ttl_seconds``, the lease through the ``ACQUIRE`` script, the
token through ``SAVE_TOKEN``), so ``scc`` cannot tell these from a live fleet. Subscribers
are real ``SUBSCRIBE`` connections, so ``PUBSUB NUMSUB`` is real too.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.client import PubSub

from scc.__main__ import main
from shared.keys import Keys
from shared.scripts import ACQUIRE, SAVE_TOKEN
from shared.status import ReplicaStatus, WatcherStatus, status_ttl_seconds

NAMESPACE = "it-scc"
BEAT_MS = 1000


@dataclass
class Run:
    """What one in-process ``scc`` run returned and printed."""

    status: int
    out: str
    err: str


@dataclass
class Deployment:
    """Writes a fleet's Redis footprint and runs ``scc`` against it."""

    url: str
    client: redis.Redis
    keys: Keys = field(default_factory=lambda: Keys(NAMESPACE))
    subscribers: list[PubSub] = field(default_factory=list)
    capsys: pytest.CaptureFixture[str] | None = None

    def elect(self, instance_id: str = "w-1", ttl_ms: int = 10_000) -> int:
        """Take the lease for ``instance_id`` as a watcher would; returns the new epoch."""
        epoch = int(self.client.eval(ACQUIRE, 2, self.keys.leader, self.keys.epoch,
                                     instance_id, ttl_ms))  # fmt: skip
        assert epoch > 0, "the lease was not free"
        return epoch

    def watcher(self, instance_id: str = "w-1", **fields: Any) -> None:
        """Write a watcher heartbeat hash (fresh unless ``updated_at`` says otherwise)."""
        now = time.time()
        values: dict[str, Any] = {
            "instance_id": instance_id, "role": "standby", "started_at": now - 600,
            "updated_at": now, "version": "0.1.0",
        }  # fmt: skip
        values.update(fields)
        self._heartbeat(self.keys.watcher(instance_id), WatcherStatus(**values).to_hash())

    def leader(self, instance_id: str = "w-1", **fields: Any) -> int:
        """Elect ``instance_id`` and write its leader heartbeat; returns the epoch."""
        epoch = self.elect(instance_id)
        now = time.time()
        self.watcher(instance_id, role="leader", epoch=epoch, last_empty_batch_at=now - 0.2,
                     elections=1, **fields)  # fmt: skip
        return epoch

    def replica(self, instance_id: str, **fields: Any) -> None:
        """Write a replica heartbeat hash: ready, at ``{ns}:seq``, fresh, unless overridden."""
        now = time.time()
        seq = int(self.client.get(self.keys.seq) or 0)
        values: dict[str, Any] = {
            "instance_id": instance_id, "ready": True, "change_stream_active": True,
            "cache_size": 120, "last_seq": seq, "epoch": 1, "warmed_at": now - 300,
            "last_message_at": now - 0.1, "started_at": now - 310, "updated_at": now,
            "version": "0.1.0",
        }  # fmt: skip
        values.update(fields)
        self._heartbeat(self.keys.replica(instance_id), ReplicaStatus(**values).to_hash())

    def _heartbeat(self, key: str, mapping: dict[str, str]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(key, status_ttl_seconds(BEAT_MS))
            pipe.execute()

    def subscribe(self, count: int = 1) -> list[PubSub]:
        """Open ``count`` real subscriptions to the invalidation channel."""
        opened = []
        for _ in range(count):
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pubsub.subscribe(self.keys.invalidations)
            assert pubsub.get_message(timeout=2.0) is None  # consumes the confirmation
            opened.append(pubsub)
        self.subscribers += opened
        return opened

    def save_token(self, instance_id: str, epoch: int, token: str = '{"_data": "82AB"}') -> None:
        """Save a resume token through the fenced script, as the leader does."""
        now = time.time()
        result = self.client.eval(SAVE_TOKEN, 3, self.keys.leader, self.keys.epoch,
                                  self.keys.resume, instance_id, epoch, token,
                                  repr(now - 1.0), repr(now - 0.3))  # fmt: skip
        assert result == 1

    def scc(self, *argv: str, url: str | None = None) -> Run:
        """Run ``scc`` in-process against this deployment (or ``url``); capture its output."""
        assert self.capsys is not None
        self.capsys.readouterr()
        target = ["--redis-url", url or self.url, "--namespace", self.keys.namespace]
        out = io.StringIO()
        status = main([*argv, *target], out=out)
        return Run(status, out.getvalue(), self.capsys.readouterr().err)


@pytest.fixture
def deployment(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    """An empty namespace in a fresh redis-server, ready to be populated."""
    for name in ("SCC_REDIS_URL", "SCC_NAMESPACE", "SCC_MESSAGE_HMAC_KEY", "SCC_MAX_AWAIT_MS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCC_HEARTBEAT_INTERVAL_MS", str(BEAT_MS))
    client = redis.Redis.from_url(redis_url)
    deployed = Deployment(url=redis_url, client=client, capsys=capsys)
    try:
        yield deployed
    finally:
        for pubsub in deployed.subscribers:
            pubsub.close()
        client.close()
