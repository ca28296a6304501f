"""The replica heartbeat hash on a real redis-server: fields, TTL, outages, shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from service.replica_status import ReplicaStatusWriter
from shared.keys import Keys
from shared.status import ReplicaStatus
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEYS = Keys("status-test")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain asyncio client of the test's redis-server."""
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1)
    try:
        yield redis
    finally:
        await redis.aclose()


def writer(redis: aioredis.Redis) -> ReplicaStatusWriter:
    return ReplicaStatusWriter(
        redis,
        KEYS,
        instance_id="r1",
        interval_ms=1000,
        read=lambda: ReplicaStatus(instance_id="r1", ready=True, cache_size=3, last_seq=9),
    )


async def test_writes_the_status_hash_with_a_ttl(client: aioredis.Redis) -> None:
    """One beat leaves {ns}:replica:{id} readable by ReplicaStatus with a TTL of 5 s."""
    assert await writer(client).write_once()
    raw = await client.hgetall(KEYS.replica("r1"))
    status = ReplicaStatus.from_hash(raw)
    assert (status.ready, status.cache_size, status.last_seq) == (True, 3, 9)
    assert 0 < await client.ttl(KEYS.replica("r1")) <= 5


async def test_outage_is_logged_once_and_never_raised(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    """With Redis down, beats fail quietly (one warning per outage) and resume afterwards."""
    beats = writer(client)
    redis_server.stop()
    with capture_logs() as logs:
        assert not await beats.write_once()
        assert not await beats.write_once()
        redis_server.start()
        await beats.write_once()  # may still hit the dead pooled connection
        assert await beats.write_once()
    warnings = [e for e in logs if e["event"] == "cannot write the replica heartbeat"]
    assert len(warnings) == 1 and beats.failures >= 2
    assert any(e["event"] == "replica heartbeat written again" for e in logs)


async def test_remove_never_holds_shutdown_on_a_hung_redis(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    """Deleting the hash at shutdown gives up after its deadline when Redis hangs."""
    beats = writer(client)
    assert await beats.write_once()
    redis_server.pause()
    try:
        started = time.monotonic()
        await beats.remove(within_s=0.3)
        assert time.monotonic() - started < 1.5
    finally:
        redis_server.resume()
