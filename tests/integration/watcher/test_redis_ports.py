"""The Redis adapters (lease, token store, channel) against a real redis-server: fencing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import decode
from watcher.electing import RedisLease
from watcher.errors import CorruptToken, FencedOut
from watcher.publishing import RedisChannel
from watcher.resuming import RedisTokenStore

pytestmark = pytest.mark.integration
KEYS = Keys("itest")
BODY = (
    b'{"v":1,"epoch":%d,"kind":"heartbeat","key":null,"doc":null,"op":null,'
    b'"cluster_time":null,"published_at":1.0}'
)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_acquire_is_exclusive_and_epochs_strictly_increase(redis: aioredis.Redis) -> None:
    """Only one instance gets the lease; every acquisition takes a higher epoch."""
    a, b = RedisLease(redis, KEYS, "a"), RedisLease(redis, KEYS, "b")
    first = await a.acquire(1000)
    assert first == 1 and await b.acquire(1000) == 0
    assert 0 < (await b.remaining_ms() or 0) <= 1000
    assert await a.release(first)
    second = await b.acquire(1000)
    assert second == 2
    assert not await a.renew(first, 1000)  # a's term is over
    assert await b.renew(second, 1000)


async def test_a_deposed_leader_can_neither_publish_nor_move_the_token(
    redis: aioredis.Redis,
) -> None:
    """After its lease lapsed and another took it, the old leader's writes are all refused."""
    old_lease, new_lease = RedisLease(redis, KEYS, "old"), RedisLease(redis, KEYS, "new")
    old_epoch = await old_lease.acquire(300)
    old_tokens = RedisTokenStore(redis, KEYS, "old")
    old_channel = RedisChannel(redis, KEYS, "old")
    await old_tokens.save({"_data": "01"}, epoch=old_epoch, cluster_time=1.5, saved_at=2.0)
    assert await old_channel.publish(BODY % old_epoch, epoch=old_epoch, incr=True) == 1

    await asyncio.sleep(0.35)  # the old leader "pauses" past its TTL
    new_epoch = await new_lease.acquire(5000)
    assert new_epoch == old_epoch + 1

    pubsub = redis.pubsub()
    await pubsub.subscribe(KEYS.invalidations)
    try:
        with pytest.raises(FencedOut):
            await old_channel.publish(BODY % old_epoch, epoch=old_epoch, incr=True)
        with pytest.raises(FencedOut):
            await old_tokens.save({"_data": "99"}, epoch=old_epoch, cluster_time=None, saved_at=3)
        assert await redis.get(KEYS.seq) == b"1"
        stored = await old_tokens.load()
        assert stored is not None and stored.token == {"_data": "01"} and stored.saved_by == "old"
        await pubsub.get_message(timeout=0.1)  # subscribe confirmation
        assert await pubsub.get_message(timeout=0.1) is None
    finally:
        await pubsub.aclose()


async def test_publish_numbers_messages_and_heartbeats_repeat_the_seq(
    redis: aioredis.Redis,
) -> None:
    """The script splices a gap-free seq into the body; a heartbeat repeats the current one."""
    lease = RedisLease(redis, KEYS, "a")
    epoch = await lease.acquire(5000)
    channel = RedisChannel(redis, KEYS, "a")
    pubsub = redis.pubsub()
    await pubsub.subscribe(KEYS.invalidations)
    try:
        await pubsub.get_message(timeout=1)
        seqs = [await channel.publish(BODY % epoch, epoch=epoch, incr=True) for _ in range(3)]
        seqs.append(await channel.publish(BODY % epoch, epoch=epoch, incr=False))
        assert seqs == [1, 2, 3, 3]
        received = []
        while len(received) < 4:
            message = await pubsub.get_message(timeout=1)
            if message and message["type"] == "message":
                received.append(decode(message["data"]).seq)
        assert received == [1, 2, 3, 3]
    finally:
        await pubsub.aclose()


async def test_token_store_round_trips_and_reports_corruption(redis: aioredis.Redis) -> None:
    """A saved token reads back with its metadata; a mangled hash raises CorruptToken."""
    lease = RedisLease(redis, KEYS, "a")
    epoch = await lease.acquire(5000)
    tokens = RedisTokenStore(redis, KEYS, "a")
    assert await tokens.load() is None
    await tokens.save({"_data": "826A"}, epoch=epoch, cluster_time=17.25, saved_at=18.5)
    stored = await tokens.load()
    assert stored is not None
    assert (stored.token, stored.epoch, stored.cluster_time, stored.saved_at, stored.saved_by) == (
        {"_data": "826A"},
        epoch,
        17.25,
        18.5,
        "a",
    )
    await redis.hset(KEYS.resume, "token", "{oops")
    with pytest.raises(CorruptToken):
        await tokens.load()
