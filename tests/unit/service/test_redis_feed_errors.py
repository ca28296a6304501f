"""RedisFeed turns every way a Redis connection can break into FeedLost, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from service.errors import FeedLost
from service.redis_feed import RedisFeed
from shared.keys import Keys

# What uvloop raises from inside redis-py when a reconnect races a closed transport.
CLOSED_TRANSPORT = RuntimeError(
    "unable to perform operation on <TCPTransport closed=True reading=False>; the handler is closed"
)


class BrokenPubSub:
    """A pub/sub that confirms the subscription, then fails every read with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.unconfirmed: list[str] = []

    async def subscribe(self, *channels: str) -> None:
        self.unconfirmed = list(channels)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109 - mirrors redis-py
        if self.unconfirmed:
            return {"type": "subscribe", "channel": self.unconfirmed.pop(0).encode()}
        raise self.error

    async def aclose(self) -> None:
        return None


class BrokenRedis:
    """A Redis client whose pub/sub and GETs fail with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def pubsub(self) -> BrokenPubSub:
        return BrokenPubSub(self.error)

    async def mget(self, *keys: str) -> list[Any]:
        raise self.error

    async def publish(self, channel: str, message: str) -> int:
        raise self.error


@pytest.mark.parametrize("error", [CLOSED_TRANSPORT, RedisConnectionError("reset"), OSError(104)])
async def test_broken_connection_is_feed_lost(error: BaseException) -> None:
    """A read or position lookup that fails in any of these ways raises FeedLost."""
    feed = RedisFeed(BrokenRedis(error), Keys("t"), confirm_timeout_s=1.0)  # type: ignore[arg-type]
    await feed.open()
    with pytest.raises(FeedLost):
        await feed.receive(0.01)
    with pytest.raises(FeedLost):
        await feed.position()
    with pytest.raises(FeedLost):
        await feed.mark()


class ReadOnlyRedis(BrokenRedis):
    """Reads work; publishing (the catch-up marker) fails."""

    async def mget(self, *keys: str) -> list[Any]:
        return [b"7", b"2", b"t"]


async def test_a_marker_that_cannot_be_published_does_not_fail_the_read() -> None:
    """position() still answers when the marker PUBLISH fails (the tail's window ends it)."""
    feed = RedisFeed(ReadOnlyRedis(OSError(104)), Keys("t"), confirm_timeout_s=1.0)  # type: ignore[arg-type]
    assert await feed.position() == (7, 2, "t")
