"""RedisFeed against a real redis-server: confirmation, messages, resubscription, outages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from service.errors import FeedLost
from service.feed import CAUGHT_UP, SUBSCRIBED
from service.redis_feed import RedisFeed
from shared.keys import Keys
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEYS = Keys("feed-test")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain asyncio client of the test's redis-server."""
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1)
    try:
        yield redis
    finally:
        await redis.aclose()


async def next_item(feed: RedisFeed, within_s: float = 3.0) -> bytes | str:
    """The next non-empty item from the feed (FeedLost propagates)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        item = await feed.receive(0.05)
        if item is not None:
            return item
    raise AssertionError("nothing arrived")


async def test_open_waits_for_confirmation_then_delivers_messages(
    client: aioredis.Redis,
) -> None:
    """After open() returns, a PUBLISH on the channel is received as its raw bytes."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=2)
    try:
        await feed.open()
        assert await client.publish(KEYS.invalidations, b"payload") == 1
        assert await next_item(feed) == b"payload"
        assert await feed.receive(0.01) is None
    finally:
        await feed.close()


async def test_position_reads_seq_and_epoch(client: aioredis.Redis) -> None:
    """position() is (0, None, None) on an empty Redis, then the counters and the term id."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=2)
    assert await feed.position() == (0, None, None)
    await client.set(KEYS.seq, 41)
    await client.set(KEYS.epoch, 3)
    assert await feed.position() == (41, 3, None)
    await client.set(KEYS.term, "a1b2")
    assert await feed.position() == (41, 3, "a1b2")
    await client.set(KEYS.epoch, "garbage")
    assert await feed.position() == (41, None, "a1b2")


async def test_killed_connection_surfaces_as_resubscription_or_loss(
    client: aioredis.Redis,
) -> None:
    """CLIENT KILL TYPE pubsub never goes unnoticed: SUBSCRIBED again, or FeedLost."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=2)
    try:
        await feed.open()
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        try:
            assert await next_item(feed) == SUBSCRIBED
        except FeedLost:
            pass
    finally:
        await feed.close()


async def test_stopped_redis_is_feed_lost(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    """With the server gone, receive(), open() and position() raise FeedLost, nothing else."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=1)
    try:
        await feed.open()
        redis_server.stop()
        with pytest.raises(FeedLost):
            await next_item(feed)
        await feed.close()
        with pytest.raises(FeedLost):
            await feed.open()
        with pytest.raises(FeedLost):
            await feed.position()
    finally:
        await feed.close()


async def test_hung_redis_fails_open_within_the_deadline(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    """A paused (SIGSTOP) server makes open() fail after the confirmation deadline."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=0.5)
    redis_server.pause()
    try:
        with pytest.raises(FeedLost):
            async with asyncio.timeout(5):
                await feed.open()
    finally:
        redis_server.resume()
        await feed.close()


async def test_position_is_followed_by_the_catch_up_marker_after_earlier_messages(
    client: aioredis.Redis,
) -> None:
    """A message published before position() arrives first, then CAUGHT_UP for the last read."""
    feed = RedisFeed(client, KEYS, confirm_timeout_s=2, instance_id="r-9")
    try:
        await feed.open()
        await client.publish(KEYS.invalidations, b"before")
        await feed.position()
        await feed.position()  # only the newest marker counts
        assert await next_item(feed) == b"before"
        assert await next_item(feed) == CAUGHT_UP
        assert await feed.receive(0.05) is None
    finally:
        await feed.close()
