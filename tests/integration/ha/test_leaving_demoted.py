"""No connection of a Sentinel client stays on, or comes up on, a primary a switch demoted.

Three ways, seen in the ``sentinel-switch`` chaos runs, by which a watcher or a replica
kept writing to the demoted primary for seconds: a command in flight when its connection
was closed is retried by redis-py, which reconnects to the connection's last address
without asking the sentinels; a connection made just before the ``+switch-master``
announcement arrived made the pool name the new primary while an in-use connection was
still on the old one; and a connection that asked the sentinels before the switch came up
on the old primary after its connections were closed. Each is driven here against a real
Sentinel group.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.clients import FollowingPool, SentinelRedis, make_redis
from shared.sentinel_watching import SwitchWatch, stop_watch
from shared.settings import RedisSettings
from tests.support.sentinel_group import MASTER_NAME, SentinelGroup

pytestmark = pytest.mark.e2e
NAME = "leave-test"
CHANNEL = "leave-test:channel"


def _client(group: SentinelGroup) -> SentinelRedis:
    client = make_redis(RedisSettings(url=SecretStr(group.url())), client_name=NAME)
    assert isinstance(client, SentinelRedis)
    return client


def _ours_on(group: SentinelGroup, port: int) -> list[str]:
    with group.node_on(port).client() as direct:
        return [f"{c.get('cmd')}" for c in direct.client_list() if c.get("name") == NAME]


@pytest.mark.timeout(60)
async def test_a_subscription_leaves_the_old_primary_though_the_pool_already_asked_anew(
    sentinel_group: SentinelGroup,
) -> None:
    """A switch heard after the pool already named the new primary still moves the subscription."""
    client = _client(sentinel_group)
    pubsub = client.pubsub()
    watch = SwitchWatch(client)
    try:
        await pubsub.subscribe(CHANNEL)
        assert (await pubsub.get_message(timeout=2))["type"] == "subscribe"
        old = sentinel_group.primary.port
        assert _ours_on(sentinel_group, old) == ["subscribe"]
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        # Another task connects before the announcement is read: the pool asks a sentinel
        # that already names the new primary (redis-py then closes idle connections only).
        pool = client.connection_pool
        deadline = time.monotonic() + 5
        while await pool.get_master_address() != ("127.0.0.1", new):
            assert time.monotonic() < deadline, "no sentinel the client asks names the new primary"
            await asyncio.sleep(0.05)
        announced = f"{MASTER_NAME} 127.0.0.1 {old} 127.0.0.1 {new}".encode()
        await watch._heard(announced, client.sentinels.sentinels[0])
        assert _ours_on(sentinel_group, old) == [], "a connection stayed on the demoted primary"
        # The subscription is re-made on the new primary and hears it.
        with sentinel_group.node_on(new).client() as on_new:
            heard = None
            while heard is None or heard.get("type") != "message":
                assert time.monotonic() < deadline + 5, "the subscription did not move"
                on_new.publish(CHANNEL, b"on-new")
                try:
                    heard = await pubsub.get_message(timeout=0.1)
                except RedisConnectionError:
                    heard = None
    finally:
        await pubsub.aclose()
        await client.aclose()


@pytest.mark.timeout(60)
async def test_a_connection_that_comes_up_on_a_demoted_primary_is_dropped(
    sentinel_group: SentinelGroup,
) -> None:
    """A connection that asked the sentinels before a switch and connects after it is refused."""
    client = _client(sentinel_group)
    try:
        pool = client.connection_pool
        assert isinstance(pool, FollowingPool)
        address = await pool.get_master_address()  # asked before the switch...
        connection = pool.make_connection()
        pool.demote(address)  # ...the switch is heard while it connects...
        try:
            with pytest.raises(RedisConnectionError, match="demoted"):
                await connection.connect_to(address)
            assert _ours_on(sentinel_group, int(address[1])) == []
        finally:
            await connection.disconnect()
    finally:
        await client.aclose()


@pytest.mark.timeout(60)
async def test_a_command_in_flight_at_the_switch_is_retried_on_the_new_primary(
    sentinel_group: SentinelGroup,
) -> None:
    """A blocked command whose connection the switch closed is retried on the new primary."""
    client = _client(sentinel_group)
    watch = SwitchWatch(client)
    watching = asyncio.create_task(watch.run(), name="watch")
    blocked = asyncio.create_task(client.blpop(["leave-test:list"], timeout=20), name="blpop")
    try:
        old = sentinel_group.primary.port
        deadline = time.monotonic() + 5
        while _ours_on(sentinel_group, old) != ["blpop"]:
            assert time.monotonic() < deadline, "the command never reached the primary"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the watch has subscribed on every sentinel
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        deadline = time.monotonic() + 2
        while watch.switches == 0:
            assert time.monotonic() < deadline, "the switch was not heard"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the retried command has reconnected by now
        assert _ours_on(sentinel_group, old) == [], "the retried command went to the old primary"
        with sentinel_group.node_on(new).client() as on_new:
            on_new.rpush("leave-test:list", b"on-new")
        async with asyncio.timeout(5):
            assert tuple(await blocked) == (b"leave-test:list", b"on-new")
    finally:
        blocked.cancel()
        await asyncio.gather(blocked, return_exceptions=True)
        await stop_watch(watch, watching)
        await client.aclose()
