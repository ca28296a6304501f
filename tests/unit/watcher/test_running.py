"""The assembled watcher on fakes: leads, publishes, exposes metrics, stops in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import httpx
import pytest

from shared.settings import Settings, load_settings
from shared.telemetry import make_telemetry
from tests.unit.watcher.fakes import FakeChannel, FakeLease, FakeRedis, FakeSource, FakeTokens
from watcher.running import Ports, Watcher

#: A lease short enough that a lapse shows within a test's wait.
SHORT_TTL_MS = 300
#: A lease no pause of the event loop lapses: for a test that counts what one term
#: published (a lapsed lease re-elects, and the new term replays from the stored token).
STEADY_TTL_MS = 30_000


def settings(instance_id: str = "w1", leader_ttl_ms: int = SHORT_TTL_MS) -> Settings:
    return load_settings(
        mongo={"uri": "mongodb://127.0.0.1:1"},
        timing={
            "leader_ttl_ms": leader_ttl_ms,
            "heartbeat_interval_ms": 50,
            "max_await_ms": 10,
            "token_save_interval_ms": 50,
        },
        http={"host": "127.0.0.1", "port": 0},
        process={"instance_id": instance_id},
    )


def make_watcher(
    redis: FakeRedis,
    source: FakeSource,
    instance_id: str = "w1",
    *,
    leader_ttl_ms: int = SHORT_TTL_MS,
) -> Watcher:
    return Watcher(
        settings=settings(instance_id, leader_ttl_ms),
        redis=fakeredis.FakeAsyncRedis(),
        source=source,
        telemetry=make_telemetry(service_name="scc-watcher", instance_id=instance_id),
        ports=Ports(
            lease=FakeLease(redis, instance_id),
            tokens=FakeTokens(redis, instance_id),
            channel=FakeChannel(redis, instance_id),
        ),
    )


@asynccontextmanager
async def running(watcher: Watcher) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop), name="test.watcher")
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_the_watcher_leads_publishes_and_releases_on_stop() -> None:
    """It takes the lease, publishes a change and heartbeats, and releases the lease at stop."""
    redis, source = FakeRedis(), FakeSource()
    watcher = make_watcher(redis, source)
    async with running(watcher):
        await asyncio.wait_for(watcher.leadership.wait_for(True), 2)
        await eventually(lambda: watcher.stats.stream_open)
        source.insert(1, "k1")
        await eventually(lambda: any(m.key == "k1" for m in redis.messages()))
        await eventually(lambda: any(m.kind == "heartbeat" for m in redis.messages()))
        assert watcher.readiness()[0]
    assert redis.holder() is None
    assert not watcher.leadership.is_leader


async def test_metrics_expose_the_documented_names() -> None:
    """``/metrics`` shows every ``scc_watcher_*`` name the issue lists, as exported."""
    redis, source = FakeRedis(), FakeSource()
    watcher = make_watcher(redis, source, leader_ttl_ms=STEADY_TTL_MS)
    async with running(watcher):
        await eventually(lambda: watcher.stats.stream_open)
        source.insert(1, "k1")
        await eventually(lambda: watcher.stats.events["insert"] == 1)
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"http://127.0.0.1:{watcher.http.port}/metrics")).text
            ready = await client.get(f"http://127.0.0.1:{watcher.http.port}/health/ready")
    assert ready.status_code == 200 and ready.json()["role"] == "leader"
    names = {line.split("{")[0].split(" ")[0] for line in body.splitlines() if line[:1] != "#"}
    for expected in (
        "scc_watcher_is_leader",
        "scc_watcher_events_total",
        "scc_watcher_publish_seconds_bucket",
        "scc_watcher_publish_seconds_count",
        "scc_watcher_lag_seconds",
        "scc_watcher_resyncs_total",
        "scc_watcher_elections_total",
    ):
        assert expected in names, f"{expected} missing from /metrics"
    assert 'scc_watcher_events_total{op="insert"} 1.0' in body
    assert 'scc_watcher_resyncs_total{reason="no_token"} 1.0' in body
    assert "scc_watcher_is_leader 1.0" in body


async def test_a_standby_is_ready_while_its_lease_loop_runs() -> None:
    """A standby reports ready (lease loop alive) and not leader; the leader keeps the lease."""
    redis, source = FakeRedis(), FakeSource()
    leader, standby = make_watcher(redis, source, "a"), make_watcher(redis, source, "b")
    async with running(leader):
        await asyncio.wait_for(leader.leadership.wait_for(True), 2)
        async with running(standby):
            await eventually(lambda: standby.elector.alive_at is not None)
            ok, detail = standby.readiness()
            assert ok and detail["role"] == "standby"
            assert not standby.leadership.is_leader


async def test_a_dead_root_task_ends_run_with_the_error_and_releases_the_lease() -> None:
    """A bug that kills a root task ends ``run`` with that error; the lease is still released."""
    redis, source = FakeRedis(), FakeSource()

    async def broken_scan(key_field: str) -> Any:
        raise RuntimeError("bug in the scan")
        yield  # pragma: no cover

    source.scan_keys = broken_scan  # type: ignore[method-assign]
    watcher = make_watcher(redis, source)
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.wait_for(watcher.run(asyncio.Event()), 5)
    assert caught.group_contains(RuntimeError, match="bug in the scan")
    assert redis.holder() is None


async def test_revoking_leadership_cancels_the_leader_work_at_once() -> None:
    """When the lease loop revokes the term, the stream closes before anything else is sent."""
    redis, source = FakeRedis(), FakeSource()
    watcher = make_watcher(redis, source)
    async with running(watcher):
        await eventually(lambda: watcher.stats.stream_open)
        redis.hang = True  # renewals and publishes hang from now on
        await asyncio.wait_for(watcher.leadership.wait_for(False), 2)
        await eventually(lambda: not watcher.stats.stream_open)
        sent = len(redis.published)
        redis.hang = False
        redis.leader, redis.expires_at = "someone-else", time.monotonic() + 60
        await asyncio.sleep(0.2)
        assert len(redis.published) == sent
        assert not watcher.leadership.is_leader
        redis.leader = None


async def test_another_root_task_dying_while_leading_ends_the_session_too() -> None:
    """If a root task other than the leader's dies, the session is cancelled, not left hanging."""
    redis, source = FakeRedis(), FakeSource()
    watcher = make_watcher(redis, source)
    broken = asyncio.Event()
    original = watcher.status.write_once

    async def write_once() -> bool:
        if broken.is_set():
            raise RuntimeError("bug in the status writer")
        return await original()

    watcher.status.write_once = write_once  # type: ignore[method-assign]
    run = asyncio.create_task(watcher.run(asyncio.Event()), name="test.watcher")
    await eventually(lambda: watcher.stats.stream_open)
    source.insert(1, "k1")
    await eventually(lambda: any(m.key == "k1" for m in redis.messages()))
    broken.set()
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.wait_for(run, 5)
    assert caught.group_contains(RuntimeError, match="status writer")
    assert not watcher.stats.stream_open
    assert redis.holder() is None
