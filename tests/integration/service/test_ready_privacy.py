"""``/health/ready`` tells an unauthenticated caller that Redis is down, not where it lives."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.service.replica_rig import replica_rig, wait_for
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


async def test_ready_says_redis_unreachable_without_host_or_port(
    redis_url: str, redis_server: RedisServer, mongo_double: MongoDouble
) -> None:
    """With Redis stopped, readiness lists "redis unreachable" and names no host or port."""
    await asyncio.to_thread(
        mongo_double.insert_documents,
        [{"source_id": "kept"}],
        db="ingestion",
        collection="source_configs",
    )
    async with replica_rig(redis_url, mongo_double) as rig:
        redis_server.stop()
        await wait_for(lambda: not rig.replica.subscriber.state.redis_ok, what="redis down")
        body = (await rig.http.get("/health/ready")).text
        assert "redis unreachable" in body
        assert str(redis_server.port) not in body and "127.0.0.1" not in body
        assert str(redis_server.port) in rig.replica.subscriber.state.last_error  # kept for logs
