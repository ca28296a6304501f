"""``?role=replica`` against a real Sentinel group: subscriptions spread over replicas and move.

The service replica's feed subscribes through ``SCC_REDIS_SUBSCRIBE_URL`` =
``redis+sentinel://.../MASTER?role=replica`` and reads seq on the primary; which node a
subscription sits on is read from each data node's ``CLIENT LIST TYPE pubsub``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from pydantic import SecretStr

from service.errors import FeedLost
from service.feed import CAUGHT_UP, SUBSCRIBED
from service.redis_feed import RedisFeed
from shared.clients import SpreadReplicaPool, make_redis, make_subscribe_redis, spread_index
from shared.keys import Keys
from shared.settings import RedisSettings
from tests.support.sentinel_group import SentinelGroup

pytestmark = pytest.mark.e2e
KEYS = Keys("replica-role-test")


def settings(group: SentinelGroup) -> RedisSettings:
    """Writes through the Sentinel URL, subscriptions on the master's replicas."""
    return RedisSettings(
        url=SecretStr(group.url()), subscribe_url=SecretStr(f"{group.url()}?role=replica")
    )


def subscribed_on(group: SentinelGroup, name: str) -> list[int]:
    """Ports of the data nodes holding a pub/sub connection called ``name``."""
    ports = []
    for node in group.data:
        if not node.running:
            continue
        with node.client() as client:
            if any(c.get("name") == name for c in client.client_list(_type="pubsub")):
                ports.append(node.port)
    return ports


async def open_feed(group: SentinelGroup, instance: str) -> RedisFeed:
    """A RedisFeed for ``instance`` that subscribes on a replica (connection ``sub-<id>``)."""
    config = settings(group)
    primary = make_redis(config, client_name=f"pri-{instance}")
    via = make_subscribe_redis(config, client_name=f"sub-{instance}", spread_key=instance)
    assert via is not None and isinstance(via.connection_pool, SpreadReplicaPool)
    feed = RedisFeed(primary, KEYS, confirm_timeout_s=3, subscribe_via=via, instance_id=instance)
    feed.clients = (primary, via)  # type: ignore[attr-defined]  # closed by close_feed
    await feed.open()
    return feed


async def close_feed(feed: RedisFeed) -> None:
    """Close the feed and both of its clients."""
    await feed.close()
    for client in feed.clients:  # type: ignore[attr-defined]
        await client.aclose()


@pytest.mark.timeout(60)
async def test_subscriptions_spread_over_the_replicas_by_instance_id(
    sentinel_group: SentinelGroup,
) -> None:
    """Each feed sits on the replica its instance id picks: both are used, the master never."""
    instances = [f"r-{i}" for i in range(3)] + ["pod-a1b2", "host-77-beef", "x"]
    feeds = [await open_feed(sentinel_group, i) for i in instances]
    try:
        primary = sentinel_group.primary.port
        replicas = sorted(n.port for n in sentinel_group.data if n.port != primary)
        used = set()
        for instance in instances:
            [port] = subscribed_on(sentinel_group, f"sub-{instance}")
            assert port == replicas[spread_index(instance) % len(replicas)]
            used.add(port)
        assert used == set(replicas)
        assert await feeds[0].position() == (0, None, None)  # read on the primary
    finally:
        for feed in feeds:
            await close_feed(feed)


async def receive_publish(feed: RedisFeed, group: SentinelGroup, within_s: float) -> list[str]:
    """Publish on the primary until a message comes through ``feed``; what arrived before it."""
    seen: list[str] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), group.primary.client() as primary:
            primary.publish(KEYS.invalidations, b"hello")
        try:
            item = await feed.receive(0.1)
        except FeedLost:
            seen.append("lost")
            with contextlib.suppress(FeedLost):
                await feed.open()
            continue
        if item == b"hello":
            return seen
        if item is not None:
            seen.append(str(item))
    raise AssertionError(f"no message through the feed within {within_s}s (saw {seen})")


@pytest.mark.timeout(60)
async def test_a_subscription_moves_when_its_replica_goes_away(
    sentinel_group: SentinelGroup,
) -> None:
    """Kill the replica a feed sits on: it resubscribes on another node and hears the primary."""
    feed = await open_feed(sentinel_group, "mover")
    try:
        assert await receive_publish(feed, sentinel_group, within_s=5) == []
        [before] = subscribed_on(sentinel_group, "sub-mover")
        sentinel_group.node_on(before).kill()
        seen = await receive_publish(feed, sentinel_group, within_s=20)
        assert seen and seen[0] in (SUBSCRIBED, "lost"), seen  # the move is never silent
        [after] = subscribed_on(sentinel_group, "sub-mover")
        assert after != before
        await feed.position()  # the marker follows the move
        while (item := await feed.receive(1.0)) not in (CAUGHT_UP, None):
            pass
        assert item == CAUGHT_UP
    finally:
        await close_feed(feed)
        await asyncio.to_thread(sentinel_group.node_on(before).start)


@pytest.mark.timeout(60)
async def test_a_subscription_on_a_replica_follows_a_planned_failover(
    sentinel_group: SentinelGroup,
) -> None:
    """SENTINEL FAILOVER: the feed is moved (never silently), then hears the new primary."""
    feed = await open_feed(sentinel_group, "r-0")
    try:
        assert await receive_publish(feed, sentinel_group, within_s=5) == []
        old = sentinel_group.primary.port
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        seen: list[str] = []
        deadline = time.monotonic() + 20
        # Sentinel kills the pub/sub clients of every node it reconfigures or promotes.
        while not seen and time.monotonic() < deadline:
            seen = await receive_publish(feed, sentinel_group, within_s=20)
        assert seen and seen[0] in (SUBSCRIBED, "lost"), seen
        await asyncio.to_thread(sentinel_group.wait_settled, 30)
        assert await receive_publish(feed, sentinel_group, within_s=10) == []
        assert sentinel_group.primary.port == new
        assert subscribed_on(sentinel_group, "sub-r-0")
    finally:
        await close_feed(feed)
