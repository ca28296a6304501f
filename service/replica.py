"""One running replica: clients, cache, subscriber, heartbeat writer, and their root tasks.

Why it exists: the FastAPI lifespan must return at once (uvicorn opens the socket only
after it, and ``/health/live`` has to answer during a long warm-up), so the warm-up runs
as a background task. :func:`run_replica` is the async context manager the lifespan
enters: it builds everything from ``settings``, starts the subscriber (which warms the
cache) and the heartbeat writer under a :class:`~service.supervising.Supervisor`, and on
exit stops them, deletes the heartbeat hash and closes the clients -- in that order.

Readiness (:meth:`Replica.readiness`) is a start-up gate: 503 until the cache is loaded,
the channel subscribed and heartbeats arriving. After that first success a replica that
loses Redis or stops hearing the watcher stays in service as ``degraded`` -- it still
answers correctly, reading MongoDB for misses and, past the staleness bound, for every
lookup -- because taking every replica out at once would turn a Redis blip into an
outage. A dead root task makes it 503 (and the process exit) for good.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from service.caching import ConfigCache
from service.errors import RootTaskFailed
from service.event_sinks import EventSink, IngestCounters, RedisEventSink, StreamLimits
from service.feed import Feed
from service.metrics import register_replica_metrics
from service.redis_feed import RedisFeed
from service.replica_status import ReplicaStatusWriter
from service.storing import ConfigStore, MongoConfigStore
from service.subscribing import Subscriber
from service.supervising import Supervisor
from shared import __version__
from shared.clients import make_mongo, make_redis, make_subscribe_redis
from shared.keys import Keys
from shared.settings import Settings
from shared.status import ReplicaStatus
from shared.telemetry import Telemetry, make_telemetry

log = structlog.get_logger("service.replica")

Status = Literal["ok", "degraded", "starting", "failed"]


@dataclass
class Replica:
    """The parts of a running replica the HTTP layer reads."""

    settings: Settings
    cache: ConfigCache
    subscriber: Subscriber
    sink: EventSink
    telemetry: Telemetry
    supervisor: Supervisor
    clock: Callable[[], float] = time.monotonic
    started_at: float = field(default_factory=time.time)
    _was_ready: bool = False

    def readiness(self) -> tuple[bool, Status, list[str]]:
        """``(ready, status, problems)`` -- see the module docstring for the policy."""
        state = self.subscriber.state
        problems: list[str] = []
        if self.supervisor.failure is not None:
            return False, "failed", [str(self.supervisor.failure)]
        if not self.cache.warmed:
            problems.append("cache not loaded yet")
        if not state.redis_ok:
            problems.append("redis unreachable")  # host and port stay in logs and scc inspect
        elif not state.subscribed:
            problems.append("not subscribed to the invalidation channel")
        if state.pending_resync is not None:
            problems.append(
                f"messages may have been missed ({state.pending_resync}); reload pending,"
                " lookups read MongoDB once the cache is older than SCC_MAX_STALENESS_S"
            )
        elif not state.stream_active:
            problems.append("no message or heartbeat within 3 heartbeat intervals")
        if not problems:
            self._was_ready = True
            return True, "ok", problems
        if self._was_ready and self.cache.warmed:
            return True, "degraded", problems
        return False, "starting", problems

    def cache_health(self) -> dict[str, Any]:
        """The body of ``GET /health/cache``."""
        state = self.subscriber.state
        age = self.cache.age_seconds()
        last = state.last_message_mono
        return {
            "cache_size": self.cache.size,
            "cache_age_seconds": None if age is None else round(age, 3),
            "change_stream_active": state.stream_active,
            "last_seq": state.last_seq,
            "leader_epoch": state.epoch,
            "leader_term": state.term,
            "pending_resync": state.pending_resync,
            "last_message_age_seconds": None if last is None else round(self.clock() - last, 3),
            "warmed": self.cache.warmed,
        }

    def status(self) -> ReplicaStatus:
        """What the heartbeat hash ``{ns}:replica:{id}`` says now."""
        state = self.subscriber.state
        ready, _, _ = self.readiness()
        return ReplicaStatus(
            instance_id=self.settings.process.instance_id,
            ready=ready,
            change_stream_active=state.stream_active,
            cache_size=self.cache.size,
            last_seq=state.last_seq,
            epoch=state.epoch,
            warmed_at=state.warmed_at,
            last_message_at=state.last_message_at,
            lag_seconds=state.lag_seconds,
            resyncs=sum(state.resyncs.values()),
            started_at=self.started_at,
            updated_at=time.time(),
            version=__version__,
        )


def stream_limits(settings: Settings) -> StreamLimits:
    """How this replica caps the events streams and confirms its writes (``SCC_EVENTS_*``)."""
    http = settings.http
    return StreamLimits(
        maxlen=http.events_stream_maxlen,
        max_age_s=http.events_stream_max_age_s,
        max_bytes=http.events_stream_max_bytes,
        consumer_group=http.events_consumer_group,
        dedup_window_s=http.events_dedup_window_s,
        min_replicas=http.events_min_replicas,
        replica_timeout_ms=http.events_replica_timeout_ms,
    )


@asynccontextmanager
async def run_replica(
    settings: Settings,
    *,
    events: IngestCounters,
    on_failure: Callable[[RootTaskFailed], None] | None = None,
    store: ConfigStore | None = None,
    feed: Feed | None = None,
) -> AsyncIterator[Replica]:
    """Build a replica from ``settings``, start its root tasks, and stop them on exit.

    ``store`` and ``feed`` replace MongoDB and the Redis channel (tests only).
    """
    instance_id = settings.process.instance_id
    keys = Keys(settings.redis.namespace)
    timing = settings.timing
    async with AsyncExitStack() as stack:
        redis = make_redis(settings.redis, client_name=f"scc-replica:{instance_id}")
        stack.push_async_callback(redis.aclose)
        subscribe_via = make_subscribe_redis(
            settings.redis, client_name=f"scc-replica-sub:{instance_id}", spread_key=instance_id
        )
        if subscribe_via is not None:
            stack.push_async_callback(subscribe_via.aclose)
        if store is None:
            mongo = make_mongo(settings.mongo, appname=f"scc-replica:{instance_id}")
            stack.push_async_callback(mongo.close)
            store = MongoConfigStore(mongo, settings=settings.mongo)
        telemetry = make_telemetry(service_name="scc-service", instance_id=instance_id)
        stack.callback(telemetry.shutdown)
        cache = ConfigCache(
            store=store,
            key_field=settings.mongo.key_field,
            negative_ttl_s=timing.negative_ttl_ms / 1000,
            max_staleness_s=timing.max_staleness_s,
        )
        stack.push_async_callback(cache.aclose)
        hmac_key = settings.security.message_hmac_key
        heartbeat_s = timing.heartbeat_interval_ms / 1000
        subscriber = Subscriber(
            feed=feed
            or RedisFeed(
                redis,
                keys,
                confirm_timeout_s=max(1.0, 3 * heartbeat_s),
                subscribe_via=subscribe_via,
                instance_id=instance_id,
            ),
            store=store,
            cache=cache,
            key_field=settings.mongo.key_field,
            heartbeat_interval_s=heartbeat_s,
            resync_jitter_s=timing.resync_jitter_ms / 1000,
            hmac_key=None if hmac_key is None else hmac_key.get_secret_value().encode(),
        )
        register_replica_metrics(
            telemetry.meter("service"), cache=cache, state=subscriber.state, events=events
        )
        supervisor = Supervisor(on_failure=on_failure)
        replica = Replica(
            settings=settings,
            cache=cache,
            subscriber=subscriber,
            sink=RedisEventSink(redis, keys, limits=stream_limits(settings), trims=events.trims),
            telemetry=telemetry,
            supervisor=supervisor,
        )
        writer = ReplicaStatusWriter(
            redis,
            keys,
            instance_id=instance_id,
            interval_ms=timing.heartbeat_interval_ms,
            read=replica.status,
        )
        stack.push_async_callback(writer.remove)
        stack.push_async_callback(supervisor.aclose)
        supervisor.start("scc-subscriber", subscriber.run())
        supervisor.start("scc-replica-status", writer.run())
        log.info("replica starting", instance_id=instance_id, namespace=keys.namespace)
        yield replica
        log.info("replica stopping", instance_id=instance_id)
