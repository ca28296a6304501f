"""The fan-out curve's lightweight subscriber: the real decode/sequence/apply path, timed."""

from __future__ import annotations

import time
from typing import Any

from bench.light_subscribers import (
    STEP_FIELD,
    T0_FIELD,
    LightSubscriber,
    bucket_of,
    bucket_upper_ns,
    quantile_ns,
)
from shared.batches import encode_batch
from shared.messages import Message, encode


def change(seq: int, key: str = "k1", step: int = 1) -> Message:
    doc: dict[str, Any] = {"source_id": key, "v": seq, T0_FIELD: time.perf_counter_ns()}
    doc[STEP_FIELD] = step
    return Message(kind="upsert", seq=seq, epoch=1, term="t", key=key, doc=doc, ct=(100 + seq, 1))


async def test_single_changes_and_batches_are_applied_and_timed() -> None:
    """A v1 change and a v2 batch after it land in the snapshot, one sample per change."""
    stats: dict[int, dict[int, int]] = {}
    sub = LightSubscriber(stats)
    await sub.handle(encode(change(5)))
    await sub.handle(encode_batch([change(6, "k2"), change(7, "k3")]))
    assert sub.seq == 7 and sub.gaps == 0
    assert set(sub.snapshot.by_key) == {"k1", "k2", "k3"}
    assert sum(stats[1].values()) == 3


async def test_a_gap_is_counted_and_the_subscriber_starts_over() -> None:
    """A message beyond the next seq is a gap (a replica would reload), not applied."""
    sub = LightSubscriber({})
    await sub.handle(encode(change(1)))
    await sub.handle(encode(change(3, "k2")))
    assert sub.gaps == 1 and sub.seq == 3
    assert "k2" not in sub.snapshot.by_key
    await sub.handle(encode(change(4, "k3")))
    assert "k3" in sub.snapshot.by_key


def test_histogram_quantiles_are_bucket_upper_edges() -> None:
    """Quantiles read from the 5 % buckets are within one bucket above the true value."""
    samples = [1_000_000 * (i + 1) for i in range(100)]  # 1..100 ms
    histogram: dict[int, int] = {}
    for ns in samples:
        histogram[bucket_of(ns)] = histogram.get(bucket_of(ns), 0) + 1
    p99 = quantile_ns(histogram, 0.99)
    assert 99e6 <= p99 <= 99e6 * 1.06
    assert bucket_upper_ns(bucket_of(50_000_000)) >= 50_000_000
