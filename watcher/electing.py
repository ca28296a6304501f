"""Leader election: one fenced lease in Redis, and an awaitable toggle the leader work obeys.

Invariant: this process acts as leader only while ``monotonic() < valid_until``, where
``valid_until = start of the last successful acquire/renew + ttl × (1 − safety)``. Redis
expires the lease at the earliest ``ttl`` after it *processed* that command, which is later
than our start time, so we always stop before the lease can lapse and a standby can take
it. The renewal is awaited under a timeout ending at ``valid_until``: a hung or dead Redis
revokes leadership on time, and revoking cancels the leader's work at once.

Redis side (``shared.scripts``): ``ACQUIRE`` is ``SET {ns}:leader <id> NX PX ttl`` +
``INCR {ns}:epoch`` (the term's fencing token), confirmed on the Redis replicas with
``WAIT`` before the term begins (:mod:`watcher.confirming`); ``RENEW`` and ``RELEASE``
only act while leader *and* epoch are still ours. Every other leader write is fenced the
same way, and a refused write calls :meth:`Elector.step_down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from shared.channels import publish
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.scripts import ACQUIRE, FENCED_OUT, RELEASE, RENEW
from watcher.confirming import acquire_replicated, confirm_timeout_ms
from watcher.errors import NotLeader
from watcher.timing import SYSTEM_CLOCK, Backoff, Clock, wait_event

log = structlog.get_logger("watcher.electing")


class Lease(Protocol):
    """The lease store (Redis in production, a dict in unit tests)."""

    async def acquire(self, ttl_ms: int) -> int:
        """Take the lease if free: the new epoch (> 0), or 0 if someone holds it."""
        ...

    async def renew(self, epoch: int, ttl_ms: int) -> bool:
        """Extend our lease; False when it is no longer ours (fenced out)."""
        ...

    async def release(self, epoch: int) -> bool:
        """Give the lease up if still ours; False if it was not."""
        ...

    async def remaining_ms(self) -> int | None:
        """Milliseconds until the current lease expires, None if nobody holds it."""
        ...


class RedisLease:
    """:class:`Lease` on ``{ns}:leader`` / ``{ns}:epoch`` through the shared Lua scripts."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, instance_id: str) -> None:
        self._redis = redis
        self._keys = [keys.leader, keys.epoch]
        self._leader = keys.leader
        self._handover = keys.handover
        self._id = instance_id
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)
        #: Acquisitions given back because the replicas did not confirm them.
        self.unconfirmed = 0

    async def acquire(self, ttl_ms: int) -> int:
        """``ACQUIRE`` + ``WAIT`` (:mod:`watcher.confirming`): the new epoch, or 0.

        A lease the replicas did not confirm in time is released and raises
        :class:`StoreUnavailable`: the elector backs off and this instance does not lead.
        """
        try:
            got = await acquire_replicated(
                self._redis, self._acquire, keys=self._keys, args=[self._id, ttl_ms], ttl_ms=ttl_ms
            )
        except RedisError as e:
            raise StoreUnavailable(f"lease acquire failed: {e}") from e
        if got.epoch == 0 or got.confirmed:
            return got.epoch
        self.unconfirmed += 1
        with contextlib.suppress(StoreUnavailable):
            await self.release(got.epoch)
        raise StoreUnavailable(
            f"lease epoch {got.epoch} reached {got.acknowledged} of {got.expected} Redis "
            f"replicas within {confirm_timeout_ms(ttl_ms)} ms; released, not leading"
        )

    async def renew(self, epoch: int, ttl_ms: int) -> bool:
        """``RENEW``: True, or False when fenced out."""
        try:
            result = await self._renew(keys=self._keys, args=[self._id, epoch, ttl_ms])
        except RedisError as e:
            raise StoreUnavailable(f"lease renew failed: {e}") from e
        return int(result) != FENCED_OUT

    async def release(self, epoch: int) -> bool:
        """``RELEASE``, then announce the free lease on ``{ns}:handover``: True if it was ours."""
        try:
            result = await self._release(keys=self._keys, args=[self._id, epoch])
            if int(result) == FENCED_OUT:
                return False
            await publish(self._redis, self._handover, self._id)
        except RedisError as e:
            raise StoreUnavailable(f"lease release failed: {e}") from e
        return True

    async def remaining_ms(self) -> int | None:
        """``PTTL {ns}:leader``."""
        try:
            pttl = int(await self._redis.pttl(self._leader))
        except RedisError as e:
            raise StoreUnavailable(f"lease PTTL failed: {e}") from e
        return pttl if pttl >= 0 else None


def new_term_id() -> str:
    """A fresh random term id (64 bits, hex)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Term:
    """One tenure as leader: its fencing ``epoch``, when it began (monotonic), its id.

    ``term_id`` is drawn at random when the lease is acquired and travels in every message
    and heartbeat of the term: if Redis loses writes and issues an epoch number twice, or
    its ``seq`` goes back, replicas still tell the two terms apart (DESIGN.md, "Term id").
    """

    epoch: int
    acquired_at: float
    term_id: str = field(default_factory=new_term_id)


class Leadership:
    """An awaitable toggle: ``await leadership.wait_for(True)``; the current term and deadline.

    Only the :class:`Elector` flips it. Readers use :meth:`ensure` before every leader
    write, which also refuses once the local deadline has passed even if the elector has
    not run yet (an overloaded loop must not stretch a lease).
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._leading = asyncio.Event()
        self._standby = asyncio.Event()
        self._standby.set()
        self._term: Term | None = None
        self._valid_until = 0.0
        #: Terms granted so far (``scc_watcher_elections_total``).
        self.elections = 0

    @property
    def is_leader(self) -> bool:
        """True while a term is held and its deadline has not passed."""
        return self._term is not None and self._clock.monotonic() < self._valid_until

    @property
    def term(self) -> Term | None:
        """The term held (even if its deadline passed a moment ago), or None."""
        return self._term

    @property
    def valid_until(self) -> float:
        """Monotonic deadline of the current term (0 when standing by)."""
        return self._valid_until

    async def wait_for(self, leading: bool) -> None:
        """Return once this instance leads (``True``) or stands by (``False``)."""
        await (self._leading if leading else self._standby).wait()

    def ensure(self, term: Term) -> None:
        """Raise :class:`NotLeader` unless ``term`` is current and within its deadline."""
        if self._term != term:
            raise NotLeader(f"term {term.epoch} is over")
        if self._clock.monotonic() >= self._valid_until:
            raise NotLeader(f"term {term.epoch} passed its lease deadline")

    def grant(self, term: Term, valid_until: float) -> None:
        """Start ``term`` (elector only)."""
        self._term, self._valid_until = term, valid_until
        self.elections += 1
        self._standby.clear()
        self._leading.set()

    def extend(self, term: Term, valid_until: float) -> None:
        """Move the deadline of ``term`` after a successful renewal (elector only)."""
        if self._term == term:
            self._valid_until = valid_until

    def revoke(self, term: Term | None = None) -> bool:
        """End ``term`` (or whatever term is held); False if it was not current."""
        if self._term is None or (term is not None and term != self._term):
            return False
        self._term, self._valid_until = None, 0.0
        self._leading.clear()
        self._standby.set()
        return True


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    """Derived timing of the lease loop (seconds), from the lease TTL."""

    ttl_ms: int
    renew_fraction: float = 1 / 3
    safety_fraction: float = 0.2
    standby_poll_fraction: float = 0.2

    @property
    def ttl(self) -> float:
        """Lease TTL in seconds."""
        return self.ttl_ms / 1000

    @property
    def renew_every(self) -> float:
        """Time between the starts of two renewals (about ttl/3)."""
        return self.ttl * self.renew_fraction

    @property
    def valid_for(self) -> float:
        """How long after a successful renewal's *start* we may still act."""
        return self.ttl * (1 - self.safety_fraction)

    @property
    def standby_poll(self) -> float:
        """Longest a standby waits between two acquisition attempts."""
        return self.ttl * self.standby_poll_fraction


class Elector:
    """Acquires, renews and releases the lease; flips :class:`Leadership` accordingly."""

    def __init__(
        self,
        *,
        lease: Lease,
        leadership: Leadership,
        timing: ElectionTiming,
        clock: Clock = SYSTEM_CLOCK,
        backoff: Backoff | None = None,
    ) -> None:
        self._lease = lease
        self._leadership = leadership
        self._timing = timing
        self._clock = clock
        self._backoff = backoff or Backoff(base=timing.ttl / 10, cap=timing.ttl)
        self._next_renewal = 0.0
        self._wake = asyncio.Event()
        #: Monotonic time the loop last went round (standby readiness).
        self.alive_at: float | None = None

    @property
    def leadership(self) -> Leadership:
        """The toggle this elector drives."""
        return self._leadership

    def wake(self) -> None:
        """The lease was just released (``{ns}:handover``): a standby tries it at once."""
        self._wake.set()

    def step_down(self, term: Term, reason: str) -> None:
        """Stop leading ``term`` now (a fenced write was refused); ignored for an old term."""
        if self._leadership.revoke(term):
            log.warning("stepped down", epoch=term.epoch, reason=reason)

    async def run(self, stop: asyncio.Event, *, max_rounds: int | None = None) -> None:
        """Lease loop until ``stop`` (or ``max_rounds``, for tests); releases the lease at exit."""
        rounds = 0
        try:
            while not stop.is_set() and (max_rounds is None or rounds < max_rounds):
                rounds += 1
                self.alive_at = self._clock.monotonic()
                term = self._leadership.term
                if term is None:
                    await self._try_acquire(stop)
                elif self._clock.monotonic() < self._next_renewal:
                    # A step-down meanwhile is seen on the next round (at most ttl/3 later);
                    # by then another instance holds the lease anyway.
                    await wait_event(stop, self._next_renewal - self._clock.monotonic())
                else:
                    await self._renew(term)
        finally:
            await self._release()

    async def _try_acquire(self, stop: asyncio.Event) -> None:
        started = self._clock.monotonic()
        self._wake.clear()  # an announcement from now on ends the standby wait below
        try:
            async with asyncio.timeout(self._timing.ttl):
                epoch = await self._lease.acquire(self._timing.ttl_ms)
                remaining = None if epoch > 0 else await self._lease.remaining_ms()
        except (StoreUnavailable, TimeoutError) as e:
            delay = self._backoff.next_delay()
            log.warning(
                "lease acquire failed", error=type(e).__name__, detail=str(e), retry_in=delay
            )
            await wait_event(stop, delay)
            return
        self._backoff.reset()
        if epoch > 0:
            term = Term(epoch=epoch, acquired_at=started)
            self._next_renewal = started + self._timing.renew_every
            self._leadership.grant(term, started + self._timing.valid_for)
            log.info("lease acquired", epoch=epoch, term=term.term_id, ttl_ms=self._timing.ttl_ms)
            return
        # Held by someone else: come back just after it would expire, or at the poll cap
        # (so a released lease is taken over within one poll).
        delay = self._timing.standby_poll
        if remaining is not None:
            delay = min(delay, remaining / 1000 + 0.002)
        await _wait_any(stop, self._wake, seconds=delay)

    async def _renew(self, term: Term) -> None:
        started = self._clock.monotonic()
        remaining = self._leadership.valid_until - started
        if remaining <= 0:
            self._lose(term, "lease deadline passed before renewal")
            return
        try:
            # The timeout ends exactly at the local deadline: a hung Redis cannot keep us
            # leading past it.
            async with asyncio.timeout(remaining):
                ours = await self._lease.renew(term.epoch, self._timing.ttl_ms)
        except (StoreUnavailable, TimeoutError) as e:
            if self._clock.monotonic() >= self._leadership.valid_until:
                self._lose(term, f"renewal did not complete in time ({type(e).__name__})")
                return
            self._next_renewal = min(
                self._clock.monotonic() + self._timing.ttl / 20, self._leadership.valid_until
            )
            log.warning("lease renewal failed, retrying", epoch=term.epoch, error=type(e).__name__)
            return
        if not ours:
            self._lose(term, "lease is no longer ours (fenced out)")
            return
        self._next_renewal = started + self._timing.renew_every
        self._leadership.extend(term, started + self._timing.valid_for)

    def _lose(self, term: Term, reason: str) -> None:
        if self._leadership.revoke(term):
            log.warning("leadership lost", epoch=term.epoch, reason=reason)

    async def _release(self) -> None:
        """Revoke locally first (no more leader work), then delete the lease, shielded."""
        term = self._leadership.term
        if term is None:
            return
        self._leadership.revoke(term)
        release = asyncio.create_task(self._release_now(term), name="watcher.lease-release")
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            await release
            raise

    async def _release_now(self, term: Term) -> None:
        try:
            async with asyncio.timeout(min(1.0, self._timing.ttl)):
                released = await self._lease.release(term.epoch)
        except (StoreUnavailable, TimeoutError) as e:
            log.warning(
                "lease not released; it will expire", epoch=term.epoch, error=type(e).__name__
            )
            return
        if released:
            log.info("lease released", epoch=term.epoch)
        else:
            log.info("lease was no longer ours at release", epoch=term.epoch)


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return once any of ``events`` is set, or after ``seconds``."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.create_task(e.wait(), name="watcher.standby-wait") for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
