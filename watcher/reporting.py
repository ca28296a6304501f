"""What the watcher knows about itself, and the two ways operators read it.

:class:`WatcherStats` is the single record every component writes into with plain integer
increments (no locks, no metric calls on hot paths). Two readers export it: the
OpenTelemetry observable instruments behind ``/metrics`` (:func:`register_metrics`), and
:class:`StatusWriter`, which rewrites ``{ns}:watcher:{id}`` every heartbeat interval with a
TTL, leader and standby alike, so ``scc inspect`` and ``python -m watcher --check`` see a
live watcher and forget a dead one on their own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from opentelemetry.metrics import Histogram, Meter
from redis.exceptions import RedisError

import shared
from shared.keys import Keys
from shared.status import WatcherStatus, status_ttl_seconds
from shared.telemetry import gauge_callback
from watcher.electing import Leadership
from watcher.timing import Clock, wait_event

log = structlog.get_logger("watcher.reporting")

#: Why a document could not be carried in a message (``scc_watcher_poison_documents_total``).
POISON_REASONS = ("undecodable", "unencodable")

#: Histogram bucket bounds (seconds) for one fenced publish round trip.
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(slots=True)
class WatcherStats:
    """Counters and timestamps of one watcher process; wall-clock seconds unless noted."""

    instance_id: str
    started_at: float
    events: Counter[str] = field(default_factory=Counter)
    resyncs: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    fenced: int = 0
    oversized: int = 0
    #: Messages that carried more than one change (``v: 2`` batches).
    batches: int = 0
    #: Poison documents by reason (every reason present, so the metric shows 0).
    poison: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(POISON_REASONS, 0)))
    last_poison: str = ""
    last_event_at: float | None = None
    last_empty_batch_at: float | None = None
    #: Wall time up to which every committed change has been published (None: unknown).
    caught_up_at: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    stream_open: bool = False

    def record_error(self, where: str, error: BaseException, *, at: float) -> None:
        """Count ``error`` under its class name and remember it as the last error."""
        kind = type(error).__name__
        self.errors[kind] += 1
        self.last_error = f"{where}: {kind}: {error}"[:500]
        self.last_error_at = at

    def record_poison(self, reason: str, doc_id: object, error: str) -> None:
        """Count one poison document and remember which one it was."""
        self.poison[reason] += 1
        self.last_poison = f"{reason}: _id={doc_id!r:.120}: {error}"[:300]

    def caught_up(self, at: float | None) -> None:
        """Every change committed before ``at`` has been published (moves forward only)."""
        if at is not None and (self.caught_up_at is None or at > self.caught_up_at):
            self.caught_up_at = at

    def behind(self, now: float) -> float | None:
        """How far (seconds) the published state trails ``now``; None until known."""
        return None if self.caught_up_at is None else max(0.0, now - self.caught_up_at)

    def lag(self, now: float) -> float | None:
        """Seconds since the stream last answered (an event or an empty batch), if it has."""
        marks = [t for t in (self.last_event_at, self.last_empty_batch_at) if t is not None]
        return max(0.0, now - max(marks)) if marks else None

    def status(self, leadership: Leadership, *, now: float, stopping: bool) -> WatcherStatus:
        """The heartbeat hash for this moment."""
        term = leadership.term
        role = "stopping" if stopping else ("leader" if leadership.is_leader else "standby")
        return WatcherStatus(
            instance_id=self.instance_id,
            role=role,
            epoch=term.epoch if term is not None else None,
            last_event_at=self.last_event_at,
            last_empty_batch_at=self.last_empty_batch_at,
            events_published=sum(self.events.values()),
            resyncs=sum(self.resyncs.values()),
            elections=leadership.elections,
            poison_documents=sum(self.poison.values()),
            last_poison=self.last_poison,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            started_at=self.started_at,
            updated_at=now,
            version=shared.__version__,
        )


def register_metrics(
    meter: Meter, stats: WatcherStats, leadership: Leadership, clock: Clock
) -> Histogram:
    """Expose ``stats`` as ``scc_watcher_*`` instruments; returns the publish histogram.

    Names as exposed by the Prometheus exporter (which appends ``_total`` to counters and
    ``_seconds`` for unit ``s``): ``scc_watcher_is_leader``, ``scc_watcher_events_total{op}``,
    ``scc_watcher_publish_seconds``, ``scc_watcher_lag_seconds``,
    ``scc_watcher_resyncs_total{reason}``, ``scc_watcher_elections_total``,
    ``scc_watcher_errors_total{error}``, ``scc_watcher_skipped_total{reason}``,
    ``scc_watcher_fenced_total``, ``scc_watcher_oversized_total``,
    ``scc_watcher_poison_documents_total{reason}``, ``scc_watcher_batches_total``.
    """

    def labelled(counts: Counter[str], label: str) -> Iterable[tuple[float, dict[str, str]]]:
        return [(float(n), {label: name}) for name, n in sorted(counts.items())]

    def lag() -> Iterable[tuple[float, dict[str, str]]]:
        value = stats.lag(clock.wall())
        return [] if value is None or not leadership.is_leader else [(value, {})]

    meter.create_observable_gauge(
        "scc_watcher_is_leader",
        callbacks=[gauge_callback(lambda: [(1.0 if leadership.is_leader else 0.0, {})])],
        description="1 while this instance holds a valid leader lease.",
    )
    meter.create_observable_gauge(
        "scc_watcher_lag",
        unit="s",
        callbacks=[gauge_callback(lag)],
        description="Now minus the last change-stream answer (event or empty batch); leader only.",
    )
    counters = {
        "scc_watcher_events": (lambda: labelled(stats.events, "op"), "Changes published, by op."),
        "scc_watcher_resyncs": (
            lambda: labelled(stats.resyncs, "reason"),
            "resync messages published, by reason.",
        ),
        "scc_watcher_errors": (
            lambda: labelled(stats.errors, "error"),
            "Errors retried, by exception class.",
        ),
        "scc_watcher_skipped": (
            lambda: labelled(stats.skipped, "reason"),
            "Change events not published, by reason.",
        ),
        "scc_watcher_elections": (
            lambda: [(float(leadership.elections), {})],
            "Leases acquired by this instance.",
        ),
        "scc_watcher_fenced": (
            lambda: [(float(stats.fenced), {})],
            "Leader writes refused by the fence (this instance stepped down).",
        ),
        "scc_watcher_poison_documents": (
            lambda: labelled(stats.poison, "reason"),
            "Documents that could not be carried in a message (sent as key-only deletes or "
            "refetches), by reason.",
        ),
        "scc_watcher_oversized": (
            lambda: [(float(stats.oversized), {})],
            "Documents sent key-only with refetch because the message would be too large.",
        ),
        "scc_watcher_batches": (
            lambda: [(float(stats.batches), {})],
            "Messages that carried several changes of one change-stream batch.",
        ),
    }
    for name, (read, description) in counters.items():
        meter.create_observable_counter(
            name, callbacks=[gauge_callback(read)], description=description
        )
    return meter.create_histogram(
        "scc_watcher_publish",
        unit="s",
        description="Duration of one fenced publish (script round trip).",
        explicit_bucket_boundaries_advisory=list(PUBLISH_BUCKETS),
    )


class StatusWriter:
    """Rewrites ``{ns}:watcher:{id}`` every interval (with a TTL) and deletes it at exit."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        keys: Keys,
        stats: WatcherStats,
        leadership: Leadership,
        interval_ms: int,
        clock: Clock,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._redis = redis
        self._stopping = stopping
        self._key = keys.watcher(stats.instance_id)
        self._stats = stats
        self._leadership = leadership
        self._interval = interval_ms / 1000
        self._ttl = status_ttl_seconds(interval_ms)
        self._clock = clock
        self._failing = False
        self.writes = 0

    async def write_once(self) -> bool:
        """Write the hash once; False (logged on the first failure of a run) if Redis failed."""
        status = self._stats.status(
            self._leadership, now=self._clock.wall(), stopping=self._stopping()
        )
        try:
            async with asyncio.timeout(max(self._interval, 0.5)):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(self._key)
                    pipe.hset(self._key, mapping=status.to_hash())  # type: ignore[arg-type]
                    pipe.expire(self._key, self._ttl)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as e:
            self._stats.record_error("status", e, at=self._clock.wall())
            if not self._failing:
                log.warning("status write failed", error=type(e).__name__, detail=str(e))
            self._failing = True
            return False
        if self._failing:
            log.info("status write recovered")
        self._failing = False
        self.writes += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Write every interval until ``stop``, then delete the key (best effort)."""
        while not stop.is_set():
            await self.write_once()
            await wait_event(stop, self._interval)
        try:
            async with asyncio.timeout(1.0):
                await self._redis.delete(self._key)
        except (RedisError, OSError, TimeoutError) as e:
            log.warning("status key not deleted at exit", error=type(e).__name__)
