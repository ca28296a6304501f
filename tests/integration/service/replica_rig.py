"""A replica app on a real redis-server and the MongoDB double, plus a stand-in leader.

There is no watcher in these tests: :class:`FakeLeader` takes the lease keys and
publishes through the real fenced PUBLISH script (so seq numbers are assigned exactly as
in production), and can keep a heartbeat going. The app runs in-process through its
lifespan and is driven with ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from service.app import create_app
from service.replica import Replica
from service.supervising import stop_tasks
from shared.keys import Keys
from shared.messages import Message, encode_body
from shared.scripts import FENCED_OUT, PUBLISH
from shared.settings import Settings, load_settings
from tests.support.mongo_double import MongoDouble

HEARTBEAT_MS = 250
DB, COLLECTION = "ingestion", "source_configs"


class FakeLeader:
    """Holds ``{ns}:leader``/``{ns}:epoch`` and publishes through the fenced script."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, hmac_key: bytes | None = None):
        self.redis = redis
        self.keys = keys
        self.hmac_key = hmac_key
        self.instance_id = "test-leader"
        self.epoch = 0
        self.term = ""
        self._script = redis.register_script(PUBLISH)

    async def take(self) -> int:
        """Become leader (again): the epoch is INCRed as a real acquisition does.

        Retried once: after a Redis restart the client's pooled connection is dead and
        ``Redis.from_url`` clients do not retry by themselves.
        """
        for attempt in (1, 2):
            try:
                await self.redis.set(self.keys.leader, self.instance_id)
                self.epoch = int(await self.redis.incr(self.keys.epoch))
                self.term = secrets.token_hex(8)
                return self.epoch
            except RedisConnectionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def publish(self, kind: str, key: str | None = None, **fields: Any) -> int:
        """Publish one message; returns its seq (takes the lease again if fenced out)."""
        for _ in range(2):
            message = Message(kind=kind, seq=0, epoch=self.epoch, key=key, term=self.term, **fields)  # type: ignore[arg-type]
            body = encode_body(message, hmac_key=self.hmac_key)
            take = "0" if kind == "heartbeat" else "1"
            result = await self._script(
                keys=[self.keys.leader, self.keys.epoch, self.keys.seq, self.keys.term],
                args=[self.instance_id, self.epoch, self.keys.invalidations, body, take, self.term],
            )
            if result != FENCED_OUT:
                return int(result[0])
            await self.take()
        raise AssertionError("could not publish even after taking the lease")

    async def upsert_unseen(self, doc: dict[str, Any]) -> int:
        """Like :meth:`upsert`, published in one ``MULTI`` with ``CLIENT KILL TYPE pubsub``.

        No subscriber can hear it: Redis drops every subscribed connection and publishes
        in one step, so the message is lost for certain (a kill followed by a separate
        publish races the replica's resubscription). Returns its seq.
        """
        now = time.time()
        message = Message(
            kind="upsert",
            seq=0,
            epoch=self.epoch,
            key=doc["source_id"],
            term=self.term,
            doc=doc,
            cluster_time=now - 0.001,
            published_at=now,
        )
        body = encode_body(message, hmac_key=self.hmac_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await self._script(
                keys=[self.keys.leader, self.keys.epoch, self.keys.seq, self.keys.term],
                args=[self.instance_id, self.epoch, self.keys.invalidations, body, "1", self.term],
                client=pipe,
            )
            killed, result = await pipe.execute()
        assert int(killed) >= 1, "no subscribed connection to drop"
        assert result != FENCED_OUT, "the test leader lost its lease"
        return int(result[0])

    async def upsert(self, doc: dict[str, Any]) -> int:
        """An upsert carrying ``doc`` (its ``source_id`` is the key), as of a moment ago."""
        now = time.time()
        return await self.publish(
            "upsert", doc["source_id"], doc=doc, cluster_time=now - 0.001, published_at=now
        )

    async def delete(self, key: str) -> int:
        """A delete of ``key``."""
        return await self.publish("delete", key, published_at=time.time())

    @asynccontextmanager
    async def beating(self, interval_s: float = HEARTBEAT_MS / 1000) -> AsyncIterator[None]:
        """Publish a heartbeat every ``interval_s`` (riding out Redis outages) meanwhile."""

        async def beat() -> None:
            while True:
                with suppress(RedisError, OSError):
                    await self.publish("heartbeat", published_at=time.time())
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(beat(), name="test-leader-heartbeat")
        try:
            yield
        finally:
            await stop_tasks([task])


@dataclass
class Rig:
    """Everything one integration test of the replica touches."""

    app: FastAPI
    http: httpx.AsyncClient
    redis: aioredis.Redis
    keys: Keys
    leader: FakeLeader
    double: MongoDouble
    mongo: AsyncMongoClient[dict[str, Any]]
    settings: Settings

    @property
    def replica(self) -> Replica:
        """The running replica."""
        replica: Replica = self.app.state.replica
        return replica

    @property
    def collection(self) -> Any:
        """The test's own handle on ``source_configs`` (writes as a user would)."""
        return self.mongo[DB][COLLECTION]

    async def health(self) -> dict[str, Any]:
        """``GET /health/cache`` as a dict."""
        response = await self.http.get("/health/cache")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    async def wait_ready(self, within_s: float = 15.0) -> None:
        """Until ``/health/ready`` answers 200 with status ok."""
        await wait_for(self._ready_ok, within_s=within_s, what="replica ready")

    async def _ready_ok(self) -> bool:
        response = await self.http.get("/health/ready")
        return response.status_code == 200 and response.json()["status"] == "ok"


async def wait_for(
    check: Callable[[], Awaitable[bool] | bool], *, within_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` every 20 ms until true; fail the test after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def replica_settings(
    redis_url: str,
    mongo_uri: str,
    *,
    hmac_key: str | None = None,
    subscribe_url: str | None = None,
    **timing: Any,
) -> Settings:
    """Settings for a test replica: short heartbeat, no resync jitter, own namespace."""
    return load_settings(
        mongo={"uri": mongo_uri, "database": DB, "collection": COLLECTION, "timeout_ms": 3000},
        redis={"url": redis_url, "namespace": "scc-test", "subscribe_url": subscribe_url},
        timing={"heartbeat_interval_ms": HEARTBEAT_MS, "resync_jitter_ms": 0, **timing},
        http={"host": "127.0.0.1", "port": 0},
        security={"message_hmac_key": hmac_key},
        process={"instance_id": "replica-1", "log_format": "console"},
    )


@asynccontextmanager
async def replica_rig(
    redis_url: str,
    double: MongoDouble,
    *,
    hmac_key: str | None = None,
    heartbeats: bool = True,
    wait_ready: bool = True,
    subscribe_url: str | None = None,
    **timing: Any,
) -> AsyncIterator[Rig]:
    """Start the app's lifespan (and a heartbeating leader); stop everything on exit.

    ``subscribe_url``: where the replica subscribes (``SCC_REDIS_SUBSCRIBE_URL``)."""
    settings = replica_settings(
        redis_url, double.uri, hmac_key=hmac_key, subscribe_url=subscribe_url, **timing
    )
    keys = Keys(settings.redis.namespace)
    app = create_app(settings=settings)
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(double.uri)
    leader = FakeLeader(redis, keys, hmac_key=hmac_key.encode() if hmac_key else None)
    await leader.take()
    try:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://replica") as http,
            app.router.lifespan_context(app),
        ):
            rig = Rig(app, http, redis, keys, leader, double, mongo, settings)
            if heartbeats:
                async with leader.beating():
                    if wait_ready:
                        await rig.wait_ready()
                    yield rig
            else:
                yield rig
    finally:
        await mongo.close()
        await redis.aclose()
