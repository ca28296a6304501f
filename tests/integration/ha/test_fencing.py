"""Fencing through a Redis failover, against a real Sentinel group.

A lease counts only once the replicas hold it (``WAIT`` after ``ACQUIRE``), and a watcher
leaves a demoted primary the moment Sentinel announces the switch.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import SecretStr

from shared.clients import make_redis
from shared.errors import StoreUnavailable
from shared.settings import RedisSettings
from shared.status import WatcherStatus
from tests.integration.watcher.rig import KEYS, run_watcher, settings_for
from tests.support.sentinel_group import SentinelGroup
from tests.unit.watcher.fakes import FakeSource
from watcher.electing import RedisLease

pytestmark = pytest.mark.e2e
#: Sentinel turns a stale old primary into a replica only after 8 s; we must be done first.
BEFORE_RECONFIGURATION_S = 5.0


@pytest.mark.timeout(60)
async def test_a_lease_the_replicas_do_not_confirm_is_given_back(
    sentinel_group: SentinelGroup,
) -> None:
    """With both replicas frozen the acquisition fails and frees the lease; thawed, it holds."""
    client = make_redis(RedisSettings(url=SecretStr(sentinel_group.url())), client_name="t")
    lease = RedisLease(client, KEYS, "w-1")
    primary = sentinel_group.primary
    replicas = [n for n in sentinel_group.data if n is not primary]
    try:
        for node in replicas:
            node.pause()
        with pytest.raises(StoreUnavailable, match="reached 0 of 2 Redis replicas"):
            await lease.acquire(1000)
        with primary.client() as direct:
            assert direct.get(KEYS.leader) is None  # released, nobody leads
        assert lease.unconfirmed == 1
        for node in replicas:
            node.resume()
        epoch = await lease.acquire(1000)
        assert epoch > 0
        for node in replicas:  # WAIT returned only once each replica held it
            with node.client() as direct:
                assert direct.get(KEYS.leader) == b"w-1"
                assert int(direct.get(KEYS.epoch) or 0) == epoch
    finally:
        for node in replicas:
            node.resume()
        await client.aclose()


@pytest.mark.timeout(60)
async def test_a_watcher_moves_to_the_new_primary_on_a_planned_failover(
    sentinel_group: SentinelGroup,
) -> None:
    """After SENTINEL FAILOVER the watcher writes its heartbeat hash on the new primary at once."""
    settings = settings_for(sentinel_group.url(), "mongodb://unused", "w-1", ttl_ms=1000)
    async with run_watcher(settings, source=FakeSource()) as running:
        await asyncio.wait_for(running.watcher.leadership.wait_for(True), 10)
        old = sentinel_group.primary.port
        await asyncio.sleep(0.3)  # the switch watch has subscribed on every sentinel
        sentinel_group.failover()
        new = await asyncio.to_thread(sentinel_group.wait_new_primary, old)
        switched_at = time.time()
        deadline = time.monotonic() + BEFORE_RECONFIGURATION_S
        with sentinel_group.node_on(new).client() as on_new:
            while True:
                raw = on_new.hgetall(KEYS.watcher("w-1"))
                status = WatcherStatus.from_hash(raw) if raw else None
                if status is not None and (status.updated_at or 0) > switched_at:
                    break
                assert time.monotonic() < deadline, "the watcher still writes to the old primary"
                await asyncio.sleep(0.05)
            failover = on_new.hgetall(KEYS.failover)
        await asyncio.sleep(1.0)  # several heartbeat periods: none of them reach the old one
        with sentinel_group.node_on(old).client() as on_old:
            raw = on_old.hgetall(KEYS.watcher("w-1"))
        last_on_old = WatcherStatus.from_hash(raw).updated_at if raw else None
        assert last_on_old is None or last_on_old < switched_at + 0.5
        assert failover[b"primary"] == f"127.0.0.1:{new}".encode()
        assert failover[b"previous"] == f"127.0.0.1:{old}".encode()
