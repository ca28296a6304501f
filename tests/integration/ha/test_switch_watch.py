"""``+switch-master`` against a real Sentinel group: clients leave a demoted primary at once.

After a planned ``SENTINEL FAILOVER`` the old primary stays up and writable until Sentinel
reconfigures it (``sentinel_publish_period * 4`` = 8 s or more); these tests show the
client and the replica's feed move to the new primary well before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from pydantic import SecretStr

from service.errors import FeedLost
from service.feed import SUBSCRIBED
from service.redis_feed import RedisFeed
from shared.clients import REDIS_DOWN_ERRORS, SentinelRedis, make_redis
from shared.keys import Keys
from shared.sentinel_watching import Switch, SwitchWatch, stop_watch
from shared.settings import RedisSettings
from tests.support.sentinel_group import SentinelGroup

pytestmark = pytest.mark.e2e
KEYS = Keys("switch-test")
#: Sentinel turns a stale old primary into a replica only after 8 s; we must be done first.
BEFORE_RECONFIGURATION_S = 5.0


def _client(group: SentinelGroup) -> SentinelRedis:
    client = make_redis(RedisSettings(url=SecretStr(group.url())), client_name="switch-test")
    assert isinstance(client, SentinelRedis)
    return client


@pytest.mark.timeout(60)
async def test_a_planned_failover_moves_writes_to_the_new_primary_at_once(
    sentinel_group: SentinelGroup,
) -> None:
    """With a SwitchWatch running, writes reach the new primary long before the old is demoted."""
    client = _client(sentinel_group)
    heard: list[Switch] = []
    watch = SwitchWatch(client, heard.append)
    task = asyncio.create_task(watch.run(), name="watch")
    try:
        await client.set("k", "before")
        old = sentinel_group.primary.port
        await asyncio.sleep(0.3)  # the watch has subscribed on every sentinel
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        deadline = time.monotonic() + BEFORE_RECONFIGURATION_S
        with sentinel_group.node_on(new).client() as on_new:
            while on_new.get("k") != b"after":
                assert time.monotonic() < deadline, "writes still go to the old primary"
                with contextlib.suppress(*REDIS_DOWN_ERRORS):  # the old connection just closed
                    await client.set("k", "after")
                await asyncio.sleep(0.02)
        assert [s.new[1] for s in heard] == [new]
    finally:
        await stop_watch(watch, task)
        await client.aclose()


@pytest.mark.timeout(60)
async def test_the_replica_feed_resubscribes_on_the_new_primary_at_once(
    sentinel_group: SentinelGroup,
) -> None:
    """A RedisFeed on a Sentinel URL reports the switch and then hears the new primary."""
    client = _client(sentinel_group)
    feed = RedisFeed(client, KEYS, confirm_timeout_s=2)
    try:
        await feed.open()
        old = sentinel_group.primary.port
        await asyncio.sleep(0.3)
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        deadline = time.monotonic() + BEFORE_RECONFIGURATION_S
        noticed = False
        with sentinel_group.node_on(new).client() as on_new:
            while True:
                assert time.monotonic() < deadline, "the feed still listens to the old primary"
                try:
                    item = await feed.receive(0.05)
                except FeedLost:
                    noticed = True
                    await feed.close()
                    await feed.open()
                    continue
                noticed = noticed or item == SUBSCRIBED
                if item == b"on-new":
                    break
                on_new.publish(KEYS.invalidations, b"on-new")
        assert noticed, "the switch was not reported as a lost or renewed subscription"
    finally:
        await feed.close()
        await client.aclose()
