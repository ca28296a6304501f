"""The replica's Prometheus metrics: observable instruments over plain-integer counters.

Why it exists: the lookup path must stay a dict read, so nothing on it touches
OpenTelemetry. The cache, the subscriber and the events router count in ints; the
callbacks registered here read them when ``/metrics`` is scraped.

Exposed names (checked by a test against the rendered text, because the exporter adds
``_total`` to counters and ``_seconds`` for unit ``s``):

* ``source_config_cache_hits_total``, ``source_config_cache_misses_total``
* ``source_config_cache_invalidations_total{reason}`` (reasons: ``INVALIDATION_REASONS``)
* ``source_config_cache_age_seconds``, ``source_config_cache_size``
* ``scc_replica_lag_seconds`` (message received − its cluster time, last message)
* ``scc_replica_resyncs_total{reason}`` (``RESYNC_REASONS``)
* ``scc_messages_rejected_total{reason}`` (``MESSAGE_ERROR_REASONS``)
* ``scc_replica_store_reads_total`` (MongoDB reads made by lookups)
* ``scc_events_total{outcome}``, ``scc_events_rejected_total{reason}``,
  ``scc_events_dead_lettered_total{reason}``, ``scc_events_duplicates_total``,
  ``scc_events_trimmed_total{stream}``, ``scc_events_trimmed_unread_total{stream}``,
  ``scc_events_stream_length{stream}`` (the events router's and sink's counters)

Every label takes values from a fixed set, so the series count is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import Meter

from service.caching import ConfigCache
from service.event_sinks import IngestCounters
from service.subscriber_state import SubscriberState
from shared.telemetry import gauge_callback

_Reading = Callable[[], Iterable[tuple[float, dict[str, str]]]]


def _by_label(counts: dict[str, int], label: str) -> _Reading:
    return lambda: [(n, {label: k}) for k, n in list(counts.items())]


def _single(read: Callable[[], float | None]) -> _Reading:
    def reading() -> list[tuple[float, dict[str, str]]]:
        value = read()
        return [] if value is None else [(value, {})]

    return reading


def register_replica_metrics(
    meter: Meter, *, cache: ConfigCache, state: SubscriberState, events: IngestCounters
) -> None:
    """Register every replica instrument on ``meter`` (once per meter provider)."""
    counter, gauge = meter.create_observable_counter, meter.create_observable_gauge
    counter(
        "source_config_cache_hits",
        callbacks=[gauge_callback(_single(lambda: cache.hits))],
        description="Lookups answered from the in-memory cache.",
    )
    counter(
        "source_config_cache_misses",
        callbacks=[gauge_callback(_single(lambda: cache.misses))],
        description="Lookups not answered from memory (unknown key, negative entry, stale).",
    )
    counter(
        "source_config_cache_invalidations",
        callbacks=[gauge_callback(_by_label(cache.invalidations, "reason"))],
        description="Cache entries changed, by reason.",
    )
    gauge(
        "source_config_cache_age",
        unit="s",
        callbacks=[gauge_callback(_single(cache.age_seconds))],
        description="Seconds since the cache was last known current (load or message).",
    )
    gauge(
        "source_config_cache_size",
        callbacks=[gauge_callback(_single(lambda: cache.size))],
        description="Documents in the cache.",
    )
    gauge(
        "scc_replica_lag",
        unit="s",
        callbacks=[gauge_callback(_single(lambda: state.lag_seconds))],
        description="Last message: time received minus its MongoDB cluster time.",
    )
    counter(
        "scc_replica_resyncs",
        callbacks=[gauge_callback(_by_label(state.resyncs, "reason"))],
        description="Full reloads after start-up, by reason.",
    )
    counter(
        "scc_messages_rejected",
        callbacks=[gauge_callback(_by_label(state.rejected, "reason"))],
        description="Invalidation messages that failed to decode or verify, by reason.",
    )
    counter(
        "scc_replica_store_reads",
        callbacks=[gauge_callback(_single(lambda: cache.store_reads))],
        description="MongoDB reads made by lookups (misses, stale reads), after single-flight.",
    )
    counter(
        "scc_events",
        callbacks=[gauge_callback(events.events_by_outcome)],
        description="Blob events handled, by outcome.",
    )
    counter(
        "scc_events_rejected",
        callbacks=[gauge_callback(events.rejections_by_reason)],
        description="POST /events/blob requests refused, by reason.",
    )
    counter(
        "scc_events_dead_lettered",
        callbacks=[gauge_callback(events.dead_letters_by_reason)],
        description="Blob events parked in the dead-letter stream, by reason.",
    )
    counter(
        "scc_events_duplicates",
        callbacks=[gauge_callback(_single(lambda: events.duplicates))],
        description="Blob events answered from the de-duplication window, not stored again.",
    )
    counter(
        "scc_events_trimmed",
        callbacks=[gauge_callback(events.trimmed_by_stream)],
        description="Entries trimmed from the events streams (count, age or byte cap).",
    )
    counter(
        "scc_events_trimmed_unread",
        callbacks=[gauge_callback(events.trimmed_unread_by_stream)],
        description="Trimmed entries the consumer group had not been delivered yet.",
    )
    gauge(
        "scc_events_stream_length",
        callbacks=[gauge_callback(events.length_by_stream)],
        description="Entries in each events stream after this replica's last write.",
    )
