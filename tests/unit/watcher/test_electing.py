"""Lease loop and leadership toggle against an in-memory lease (timing: TTL 300 ms)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from tests.unit.watcher.fakes import FakeLease, FakeRedis
from watcher.electing import ElectionTiming, Elector, Leadership, Term
from watcher.errors import NotLeader

TTL_MS = 300


class SteppedClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


@asynccontextmanager
async def running(elector: Elector) -> AsyncIterator[asyncio.Event]:
    """Run ``elector`` in a named task; stop it (releasing the lease) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(elector.run(stop), name="test.elector")
    try:
        yield stop
    finally:
        stop.set()
        await task


def make(redis: FakeRedis, name: str, ttl_ms: int = TTL_MS) -> tuple[Elector, FakeLease]:
    lease = FakeLease(redis, name)
    return Elector(lease=lease, leadership=Leadership(), timing=ElectionTiming(ttl_ms)), lease


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_a_lone_elector_leads_and_renews() -> None:
    """An elector with a free lease takes epoch 1, flips the toggle and keeps renewing."""
    redis = FakeRedis()
    elector, lease = make(redis, "a")
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        term = elector.leadership.term
        assert term is not None and term.epoch == 1
        await eventually(lambda: lease.renewals >= 2)
        assert elector.leadership.is_leader and elector.leadership.elections == 1


async def test_two_electors_exactly_one_leads() -> None:
    """Two electors sharing one lease: exactly one holds it at any time."""
    redis = FakeRedis()
    (a, _), (b, _) = make(redis, "a"), make(redis, "b")
    async with running(a), running(b):
        await asyncio.wait_for(a.leadership.wait_for(True), 1)
        for _ in range(20):
            assert a.leadership.is_leader != b.leadership.is_leader
            await asyncio.sleep(0.02)


async def test_release_on_stop_hands_over_well_under_the_ttl() -> None:
    """Stopping the leader deletes the lease, so the standby leads long before the TTL."""
    redis = FakeRedis()
    a, _ = make(redis, "a")
    b, _ = make(redis, "b", ttl_ms=3000)
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a), name="test.elector-a")
    await asyncio.wait_for(a.leadership.wait_for(True), 1)
    async with running(b):
        await asyncio.sleep(0.05)
        stop_a.set()
        await task_a
        # b polls at most every ttl/5 = 600 ms of its 3 s TTL; a's release is seen then.
        started = time.monotonic()
        await asyncio.wait_for(b.leadership.wait_for(True), 1.5)
        assert time.monotonic() - started < 3.0
        assert not a.leadership.is_leader
        assert b.leadership.term is not None and b.leadership.term.epoch == 2


async def test_a_hung_renewal_revokes_before_the_lease_expires() -> None:
    """When renewals hang, leadership ends at the local deadline, before Redis expires it."""
    redis = FakeRedis()
    elector, lease = make(redis, "a")
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        lease.hang_renew = True
        await asyncio.wait_for(elector.leadership.wait_for(False), 1)
        assert time.monotonic() < redis.expires_at, "revoked only after the lease lapsed"
        lease.hang_renew = False


async def test_a_renewal_refused_by_the_fence_revokes_at_once() -> None:
    """If the lease now names another holder, the next renewal revokes leadership."""
    redis = FakeRedis()
    elector, _ = make(redis, "a")
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        redis.leader, redis.epoch = "b", redis.epoch + 1
        redis.expires_at = time.monotonic() + 10
        await asyncio.wait_for(elector.leadership.wait_for(False), 1)


async def test_a_brief_redis_failure_does_not_cost_the_lease() -> None:
    """One failed renewal is retried inside the deadline; leadership survives it."""
    redis = FakeRedis()
    elector, lease = make(redis, "a", ttl_ms=600)
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        before = lease.renewals
        redis.down = True
        await asyncio.sleep(0.25)
        redis.down = False
        await eventually(lambda: lease.renewals > before)
        assert elector.leadership.is_leader


async def test_redis_down_for_longer_than_the_deadline_revokes_then_reacquires() -> None:
    """A Redis outage longer than the lease revokes; once back, a new (higher) epoch is taken."""
    redis = FakeRedis()
    elector, _ = make(redis, "a")
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        redis.down = True
        await asyncio.wait_for(elector.leadership.wait_for(False), 1)
        redis.down = False
        await asyncio.wait_for(elector.leadership.wait_for(True), 2)
        term = elector.leadership.term
        assert term is not None and term.epoch == 2


async def test_step_down_revokes_only_the_named_term() -> None:
    """``step_down`` ends the current term and ignores one that is already over."""
    redis = FakeRedis()
    elector, _ = make(redis, "a")
    async with running(elector):
        await asyncio.wait_for(elector.leadership.wait_for(True), 1)
        current = elector.leadership.term
        assert current is not None
        elector.step_down(Term(epoch=current.epoch + 5, acquired_at=0), "stale")
        assert elector.leadership.term == current
        elector.step_down(current, "fenced out")
        assert not elector.leadership.is_leader


async def test_standby_takes_over_after_the_leader_dies_within_the_ttl() -> None:
    """A leader that stops renewing (killed) is replaced about one TTL later, not never."""
    redis = FakeRedis()
    a, _ = make(redis, "a")
    b, _ = make(redis, "b")
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a), name="test.elector-a")
    await asyncio.wait_for(a.leadership.wait_for(True), 1)
    async with running(b):
        task_a.cancel()  # a "kill": no release runs because the lease is revoked first...
        a.leadership.revoke()  # ...so model a crash: nothing deletes the lease
        with pytest.raises(asyncio.CancelledError):
            await task_a
        killed = time.monotonic()
        await asyncio.wait_for(b.leadership.wait_for(True), 2)
        assert time.monotonic() - killed < 2 * TTL_MS / 1000


def test_ensure_refuses_after_the_local_deadline_even_before_the_elector_runs() -> None:
    """A term past its deadline is refused by ``ensure`` although nobody revoked it yet."""
    clock = SteppedClock()
    leadership = Leadership(clock)
    term = Term(epoch=3, acquired_at=clock.now)
    leadership.grant(term, valid_until=clock.now + 1)
    leadership.ensure(term)
    clock.now += 1
    assert not leadership.is_leader
    with pytest.raises(NotLeader):
        leadership.ensure(term)
    with pytest.raises(NotLeader):
        leadership.ensure(Term(epoch=2, acquired_at=0))


def test_timing_keeps_the_deadline_inside_the_ttl() -> None:
    """Renewals start every ttl/3 and the local deadline ends before the TTL does."""
    timing = ElectionTiming(5000)
    assert timing.renew_every == pytest.approx(5000 / 3 / 1000)
    assert timing.renew_every * 2 < timing.valid_for < timing.ttl


async def test_max_rounds_ends_the_loop() -> None:
    """The loop's iteration limit ends it (and releases the lease) without a stop event."""
    redis = FakeRedis()
    elector, _ = make(redis, "a")
    await asyncio.wait_for(elector.run(asyncio.Event(), max_rounds=3), 2)
    assert redis.holder() is None
    assert not elector.leadership.is_leader
