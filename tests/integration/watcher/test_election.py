"""Leader election of whole watchers on a real redis-server (change source: an in-memory fake).

The change source is faked here so these tests pin down election, fencing and Redis
outages alone; the MongoDB side is covered in ``test_following.py`` and the process tests.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from shared.status import WatcherStatus
from tests.integration.watcher.rig import (
    KEYS,
    collecting,
    eventually,
    leader_of,
    run_watcher,
    settings_for,
)
from tests.support.redis_server import RedisServer
from tests.unit.watcher.fakes import FakeSource

pytestmark = pytest.mark.integration
TTL_MS = 600


async def test_two_watchers_exactly_one_leads_and_shutdown_hands_over_fast(
    redis_url: str,
) -> None:
    """One of two leads; stopping it releases the lease and the other leads well under the TTL."""
    source = FakeSource()
    a_settings = settings_for(redis_url, "mongodb://unused", "a", ttl_ms=TTL_MS)
    b_settings = settings_for(redis_url, "mongodb://unused", "b", ttl_ms=TTL_MS)
    async with (
        run_watcher(a_settings, source=source) as a,
        run_watcher(b_settings, source=source) as b,
    ):
        first = await leader_of(a, b)
        other = b if first is a else a
        for _ in range(30):  # stays exclusive through several renewals
            await leader_of(a, b)
            await asyncio.sleep(0.02)
        first_term = first.watcher.leadership.term
        assert first_term is not None
        stopped = time.monotonic()
        await first.shutdown()
        await asyncio.wait_for(other.watcher.leadership.wait_for(True), TTL_MS / 1000)
        handover = time.monotonic() - stopped
        second_term = other.watcher.leadership.term
        assert second_term is not None and second_term.epoch > first_term.epoch
        assert handover < TTL_MS / 1000


async def test_a_leader_that_stops_renewing_is_replaced_within_the_ttl(
    redis_url: str,
) -> None:
    """A leader whose lease loop dies without releasing is replaced about one TTL later."""
    source = FakeSource()
    async with run_watcher(
        settings_for(redis_url, "mongodb://unused", "a", ttl_ms=TTL_MS), source=source
    ) as a:
        await asyncio.wait_for(a.watcher.leadership.wait_for(True), 2)
        async with run_watcher(
            settings_for(redis_url, "mongodb://unused", "b", ttl_ms=TTL_MS), source=source
        ) as b:
            await asyncio.sleep(0.1)
            assert not b.watcher.leadership.is_leader
            client = aioredis.Redis.from_url(redis_url)
            try:
                # "Kill" a from Redis' point of view: its lease is no longer renewed.
                a.task.cancel()
                a.watcher.leadership.revoke()
                killed = time.monotonic()
                await asyncio.wait_for(b.watcher.leadership.wait_for(True), 2 * TTL_MS / 1000)
                assert time.monotonic() - killed < 2 * TTL_MS / 1000
                assert await client.get(KEYS.leader) == b"b"
            finally:
                await client.aclose()


async def test_every_watcher_writes_its_status_hash_with_a_ttl(redis_url: str) -> None:
    """Leader and standby both keep ``{ns}:watcher:{id}`` fresh; it is deleted at stop."""
    source = FakeSource()
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with (
            run_watcher(settings_for(redis_url, "mongodb://unused", "a"), source=source) as a,
            run_watcher(settings_for(redis_url, "mongodb://unused", "b"), source=source) as b,
        ):
            # Either may win the race for the lease (both start at once).
            leading = [asyncio.create_task(w.watcher.leadership.wait_for(True)) for w in (a, b)]
            done, pending = await asyncio.wait(leading, timeout=5, return_when="FIRST_COMPLETED")
            for task in pending:
                task.cancel()
            assert done, "nobody took the lease"
            leader = "a" if a.watcher.leadership.is_leader else "b"

            async def roles() -> set[str]:
                out = set()
                for name in ("a", "b"):
                    raw = await client.hgetall(KEYS.watcher(name))
                    if raw:
                        out.add(WatcherStatus.from_hash(raw).role)
                return out

            deadline = time.monotonic() + 5
            while await roles() != {"leader", "standby"}:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert 0 < await client.ttl(KEYS.watcher(leader)) <= 5
            status = WatcherStatus.from_hash(await client.hgetall(KEYS.watcher(leader)))
            assert status.epoch == 1 and status.elections == 1
        assert await client.exists(KEYS.watcher("a"), KEYS.watcher("b")) == 0
    finally:
        await client.aclose()


async def test_redis_restart_while_leading_reacquires_and_resyncs(
    redis_server: RedisServer,
) -> None:
    """Redis dies and comes back empty: the watcher re-acquires and publishes a resync."""
    source = FakeSource()
    settings = settings_for(redis_server.url, "mongodb://unused", "a", ttl_ms=TTL_MS)
    async with run_watcher(settings, source=source) as a:
        # The stream opens before its resync goes out (nothing after the reload is missed).
        await eventually(lambda: a.watcher.stats.resyncs["no_token"] == 1)
        assert a.watcher.stats.stream_open
        redis_server.restart()  # data lost: no lease, no token, no seq
        await eventually(lambda: a.watcher.leadership.elections == 2, within=10)
        await eventually(lambda: a.watcher.stats.resyncs["no_token"] == 2, within=10)
        async with collecting(redis_server.url) as seen:
            source.insert(1, "k1")
            await eventually(lambda: "k1" in seen.keys())
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await client.hget(KEYS.resume, "saved_by") == b"a"
            assert await client.get(KEYS.leader) == b"a"
        finally:
            await client.aclose()
        assert not a.task.done()  # no crash, no exit
        assert a.watcher.leadership.elections == 2  # no flapping afterwards


async def test_a_hung_redis_makes_the_leader_stop_before_its_lease_could_expire(
    redis_server: RedisServer,
) -> None:
    """With Redis frozen (SIGSTOP) the leader revokes itself inside the TTL, then recovers."""
    source = FakeSource()
    settings = settings_for(redis_server.url, "mongodb://unused", "a", ttl_ms=TTL_MS)
    async with run_watcher(settings, source=source) as a:
        await eventually(lambda: a.watcher.stats.stream_open)
        redis_server.pause()
        try:
            paused = time.monotonic()
            await asyncio.wait_for(a.watcher.leadership.wait_for(False), TTL_MS / 1000)
            assert time.monotonic() - paused < TTL_MS / 1000
            await eventually(lambda: not a.watcher.stats.stream_open, within=2)
        finally:
            redis_server.resume()
        await eventually(lambda: a.watcher.leadership.is_leader, within=10)
        assert not a.task.done()
