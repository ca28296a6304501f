"""One watcher process: its components wired together and supervised, with ordered shutdown.

Root tasks (all named, all in one ``TaskGroup``; if one dies it is logged and the group —
hence the process — ends with an error so the orchestrator restarts it):

``watcher.leading``  waits for leadership, runs a leader *session* (follower + heartbeat)
                     and cancels it the instant leadership is revoked;
``watcher.elector``  the lease loop;
``watcher.status``   rewrites ``{ns}:watcher:{id}``;
``watcher.http``     health and metrics;
``watcher.handover`` hears ``{ns}:handover`` (a leader that released its lease) and lets
                     the elector take the lease at once instead of at its next poll;
``watcher.sentinel`` (``redis+sentinel://`` only) follows ``+switch-master`` and closes
                     every Redis connection the moment a replica is promoted, so a demoted
                     primary that still accepts writes is not written to for seconds.

Shutdown is a relay, so every step happens while the step before still holds: ``stop`` →
the session stops intake, finishes its in-flight publish and saves the token (shielded)
→ the elector releases the lease (shielded) → the status key is deleted → HTTP closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared.clients import REDIS_DOWN_ERRORS, SentinelRedis
from shared.keys import Keys
from shared.layout import old_layout_only
from shared.settings import Settings
from shared.telemetry import Telemetry, render_metrics
from watcher.electing import ElectionTiming, Elector, Leadership, Lease, RedisLease, Term
from watcher.errors import NotLeader
from watcher.failing_over import SwitchFollower
from watcher.handing_over import HandoverListener
from watcher.publishing import Channel, Publisher, RedisChannel, run_heartbeats
from watcher.reporting import StatusWriter, WatcherStats, register_metrics
from watcher.resuming import RedisTokenStore, TokenStore
from watcher.serving import HealthServer
from watcher.timing import SYSTEM_CLOCK, Clock
from watcher.translating import KeyMap, Translator
from watcher.watching import ChangeSource, Follower

log = structlog.get_logger("watcher.running")


@dataclass(frozen=True, slots=True)
class Ports:
    """The outside world of a watcher; Redis adapters unless a test passes fakes."""

    lease: Lease
    tokens: TokenStore
    channel: Channel


def redis_ports(redis: aioredis.Redis, keys: Keys, instance_id: str) -> Ports:
    """The production ports on one Redis client."""
    return Ports(
        lease=RedisLease(redis, keys, instance_id),
        tokens=RedisTokenStore(redis, keys, instance_id),
        channel=RedisChannel(redis, keys, instance_id),
    )


class Watcher:
    """Everything one watcher process runs; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: aioredis.Redis,
        source: ChangeSource,
        telemetry: Telemetry,
        clock: Clock = SYSTEM_CLOCK,
        ports: Ports | None = None,
    ) -> None:
        instance_id = settings.process.instance_id
        keys = Keys(settings.redis.namespace)
        #: Pub/sub listeners (handover, Sentinel) run only on a real Redis, not on test fakes.
        self._listens = ports is None
        ports = ports or redis_ports(redis, keys, instance_id)
        timing = settings.timing
        self.settings = settings
        self.clock = clock
        self.stats = WatcherStats(instance_id=instance_id, started_at=clock.wall())
        self.leadership = Leadership(clock)
        self.elector = Elector(
            lease=ports.lease,
            leadership=self.leadership,
            timing=ElectionTiming(ttl_ms=timing.leader_ttl_ms),
            clock=clock,
        )
        histogram = register_metrics(telemetry.meter("watcher"), self.stats, self.leadership, clock)
        hmac = settings.security.message_hmac_key
        self.publisher = Publisher(
            channel=ports.channel,
            leadership=self.leadership,
            stats=self.stats,
            clock=clock,
            histogram=histogram,
            hmac_key=None if hmac is None else hmac.get_secret_value().encode(),
            max_message_bytes=settings.watcher.max_message_bytes,
            batch_max_changes=settings.watcher.publish_batch_max_changes,
            batch_max_bytes=settings.watcher.publish_batch_max_bytes,
        )
        self.follower = Follower(
            source=source,
            tokens=ports.tokens,
            publisher=self.publisher,
            translator=Translator(
                key_field=settings.mongo.key_field, keys=KeyMap(), stats=self.stats
            ),
            leadership=self.leadership,
            stats=self.stats,
            clock=clock,
            key_field=settings.mongo.key_field,
            token_save_interval_ms=timing.token_save_interval_ms,
        )
        self.status = StatusWriter(
            redis=redis,
            keys=keys,
            stats=self.stats,
            leadership=self.leadership,
            interval_ms=timing.heartbeat_interval_ms,
            clock=clock,
            stopping=lambda: self._stopping,
        )
        self.http = HealthServer(
            host=settings.http.host,
            port=settings.http.port,
            ready=self.readiness,
            metrics=lambda: render_metrics(telemetry),
        )
        self._stopping = False
        self._redis = redis
        self._keys = keys

    def stream_live(self) -> bool:
        """The change stream is open and answered (event or empty batch) within the limit."""
        lag = self.stats.lag(self.clock.wall())
        limit = self.settings.watcher.ready_max_lag_ms / 1000
        # Until this stream has answered once, how far it trails is unknown: no heartbeat
        # (a heartbeat tells replicas how current their cache is).
        known = self.stats.caught_up_at is not None
        return self.stats.stream_open and known and lag is not None and lag <= limit

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Leader: stream open and lag under the threshold. Standby: lease loop running."""
        now = self.clock.monotonic()
        detail: dict[str, Any] = {"role": "leader" if self.leadership.is_leader else "standby"}
        if self._stopping:
            return False, {**detail, "reason": "stopping"}
        if self.leadership.is_leader:
            detail["lag_seconds"] = self.stats.lag(self.clock.wall())
            if not self.stats.stream_open:
                return False, {**detail, "reason": "change stream not open"}
            if not self.stream_live():
                limit = self.settings.watcher.ready_max_lag_ms / 1000
                return False, {**detail, "reason": f"change stream silent over {limit}s"}
            return True, detail
        alive = self.elector.alive_at
        window = max(2 * self.settings.timing.leader_ttl_ms / 1000, 1.0)
        if alive is None or now - alive > window:
            return False, {**detail, "reason": "lease loop not running"}
        return True, detail

    async def run(self, stop: asyncio.Event) -> None:
        """Run every root task until ``stop``; shut down in order (module docstring)."""
        leading_done, elector_done, status_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        await self._warn_old_layout()
        await self.http.start()
        try:
            async with asyncio.TaskGroup() as tg:
                roots: list[tuple[str, Awaitable[None], asyncio.Event | None]] = [
                    ("watcher.leading", self._leading(stop), leading_done),
                    ("watcher.elector", self.elector.run(leading_done), elector_done),
                    ("watcher.status", self.status.run(elector_done), status_done),
                    ("watcher.http", self.http.serve(status_done), None),
                ]
                if self._listens:
                    handover = HandoverListener(
                        self._redis,
                        self._keys.handover,
                        instance_id=self.settings.process.instance_id,
                        wake=self.elector.wake,
                    )
                    roots.append(("watcher.handover", handover.run(elector_done), None))
                if self._listens and isinstance(self._redis, SentinelRedis):
                    switches = SwitchFollower(
                        self._redis,
                        self._keys,
                        leadership=self.leadership,
                        publisher=self.publisher,
                        healthy=self.stream_live,
                    )
                    roots.append(("watcher.sentinel", switches.run(status_done), None))
                for name, body, done in roots:
                    tg.create_task(_supervised(name, body, done), name=name)
                tg.create_task(self._mark_stopping(stop), name="watcher.stop-watch")
        finally:
            await self.http.close()

    async def _warn_old_layout(self) -> None:
        """One warning (and ``errors{error="OldKeyLayout"}``) if only pre-hash-tag keys exist.

        Such a deployment was not migrated (``scc migrate-keys``): leading now would start
        the change stream at the current time and seq at 0 (replicas see a new term and
        reload; changes made while no watcher ran are not published). Warned, not
        refused, so a deployment that abandons its old state on purpose still starts.
        """
        try:
            found = await old_layout_only(self._redis, self._keys)
        except REDIS_DOWN_ERRORS:
            return  # Redis is down: the lease loop reports that
        if found:
            self.stats.errors["OldKeyLayout"] += 1
            log.warning(
                "only keys of the layout before hash tags exist; run `scc migrate-keys` "
                "with the watchers stopped, or a leader starts from the current time",
                old_keys=found,
            )

    async def _mark_stopping(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        log.info("stopping: finishing in-flight work, then releasing the lease")

    async def _leading(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _first(
                ("watcher.wait-leadership", self.leadership.wait_for(True)),
                ("watcher.wait-stop", stop.wait()),
            )
            term = self.leadership.term
            if stop.is_set() or term is None:
                continue
            await self._session(term, stop)

    async def _session(self, term: Term, stop: asyncio.Event) -> None:
        """Lead ``term`` until stop, step-down or revocation (which cancels the work at once)."""
        work = asyncio.create_task(self._lead(term, stop), name="watcher.session")
        lost = asyncio.create_task(self.leadership.wait_for(False), name="watcher.lease-watch")
        try:
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                log.warning("leadership revoked; leader work cancelled", epoch=term.epoch)
        finally:
            # Also on our own cancellation (shutdown after a crash): the work must end too.
            for task in (work, lost):
                task.cancel()
            await asyncio.gather(work, lost, return_exceptions=True)
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error

    async def _lead(self, term: Term, stop: asyncio.Event) -> None:
        heartbeat_stop = asyncio.Event()
        with structlog.contextvars.bound_contextvars(epoch=term.epoch):
            log.info("leading")
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(
                        run_heartbeats(
                            self.publisher,
                            term,
                            heartbeat_stop,
                            interval_ms=self.settings.timing.heartbeat_interval_ms,
                            stats=self.stats,
                            clock=self.clock,
                            healthy=self.stream_live,
                        ),
                        name="watcher.heartbeat",
                    )
                    try:
                        await self.follower.follow(term, stop)
                    finally:
                        heartbeat_stop.set()
            except* NotLeader as group:
                reason = str(group.exceptions[0])
                self.elector.step_down(term, reason)


async def _supervised(name: str, body: Awaitable[None], done: asyncio.Event | None) -> None:
    """Run a root task; log its death loudly (the TaskGroup then ends the process)."""
    try:
        await body
    except asyncio.CancelledError:
        raise
    except BaseException:
        log.exception("root task died", task=name)
        raise
    finally:
        if done is not None:
            done.set()


async def _first(*waits: tuple[str, Coroutine[Any, Any, Any]]) -> None:
    """Return when the first of the named ``waits`` completes; cancel and reap the others."""
    tasks = [asyncio.create_task(w, name=name) for name, w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
