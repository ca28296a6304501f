"""Benchmark 4: warm-up with 100,000 documents of ~1 KiB, and memory per 10,000.

Warm-up (the double runs as its own process, seeded directly through its control verb):

* **ours, warmed** (the target row): a replica exactly as ``python -m service`` builds
  it, minus HTTP (``service.replica.run_replica``): subscribe, read ``{ns}:seq``, take the
  majority read time, load the collection with a majority read, build the snapshot and
  its index, install -- timed from entering ``run_replica`` to the cache being installed
  and serving (``cache.warmed``);
* **ours, ready** (context): the same, until ``readiness()`` turns true, which also waits
  for the first heartbeat after the install (only a heartbeat confirms a cache). That
  wait is up to one heartbeat interval (100 ms here: a bench publisher plays the leader)
  and does not depend on the collection: it measures the interval, not the load, so it
  is reported beside the target instead of inside it (at 3,000 documents it alone is
  about as long as the whole find);
* **limit**: ``await collection.find({}).to_list()`` on a fresh, connected
  ``AsyncMongoClient``.

Both run in this process, alternately, ``rounds`` times; the ratios are of the medians.
Target: warmed ≤ 1.3x the raw find.

Memory: ``tracemalloc`` around loading 10,000 of the same documents and keeping them,
(a) as our cache keeps them (``MongoConfigStore.load_all`` + ``Snapshot.build``),
(b) as a plain ``{key: doc}`` dict, (c) as the per-replica design's list; bytes still
allocated after a ``gc.collect()``, documents included. The process RSS growth over
the same step is reported alongside (coarser: the allocator keeps freed pages).
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import psutil
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from bench import ours
from bench.common import (
    KEY_FIELD,
    BenchError,
    Context,
    Outcome,
    Row,
    as_jsonable,
    describe,
    fmt_ns,
    fmt_ratio,
    make_config,
    plot_lines,
    ratio,
    wait_until,
)
from service.event_sinks import IngestCounters
from service.replica import run_replica
from service.snapshot import Snapshot
from service.storing import MongoConfigStore
from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.settings import load_settings

NAME = "warmup"
DOC_BYTES = 1024
TARGET = 1.3
HEARTBEAT_MS = 100
MEMORY_CONFIGS = 10_000


async def _raw_find(uri: str) -> tuple[float, int]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **MONGO_DOCUMENT_OPTIONS)
    try:
        await client.admin.command("ping")  # connection set-up is not part of the read
        coll = client[ours.DATABASE][ours.COLLECTION]
        start = time.perf_counter_ns()
        docs = await coll.find({}).to_list()
        return float(time.perf_counter_ns() - start), len(docs)
    finally:
        await client.close()


async def _ours_to_ready(uri: str, redis_url: str, instance: str) -> tuple[float, float, int]:
    settings = load_settings(
        mongo={"uri": uri, "database": ours.DATABASE, "collection": ours.COLLECTION},
        redis={"url": redis_url, "namespace": "benchwarm"},
        timing={"heartbeat_interval_ms": HEARTBEAT_MS},
        process={"instance_id": instance, "log_level": "warning"},
    )
    start = time.perf_counter_ns()
    async with run_replica(settings, events=IngestCounters()) as replica:
        warmed_at = 0

        def warmed() -> bool:
            nonlocal warmed_at
            if replica.cache.warmed and not warmed_at:
                warmed_at = time.perf_counter_ns()
            return replica.readiness()[0]

        await wait_until(warmed, what="replica ready", within_s=300, interval_s=0.001)
        ready = time.perf_counter_ns()
        size = replica.cache.size
    return float(ready - start), float(warmed_at - start), size


async def _memory(uri: str) -> dict[str, Any]:
    """Bytes held per 10,000 configs by each way of keeping them."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **MONGO_DOCUMENT_OPTIONS)
    settings = load_settings(
        mongo={"uri": uri, "database": ours.DATABASE, "collection": ours.COLLECTION}
    )
    store = MongoConfigStore(client, settings=settings.mongo)
    coll = client[ours.DATABASE][ours.COLLECTION]
    await client.admin.command("ping")

    async def ours_cache() -> Any:
        snapshot, _ = Snapshot.build(await store.load_all(), key_field=KEY_FIELD)
        return snapshot

    async def plain_dict() -> Any:
        return {d[KEY_FIELD]: d for d in await coll.find({}).to_list()}

    async def per_replica_list() -> Any:
        return await coll.find({}).to_list()

    out: dict[str, Any] = {}
    try:
        for label, build in (
            ("ours", ours_cache),
            ("dict", plain_dict),
            ("per_replica_list", per_replica_list),
        ):
            out[label] = await _held(build)
    finally:
        await client.close()
    return out


async def _held(build: Callable[[], Awaitable[Any]]) -> dict[str, int]:
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    try:
        kept = await build()
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = psutil.Process().memory_info().rss - rss0
    del kept
    gc.collect()
    return {"bytes": held, "peak_bytes": peak, "rss_delta_bytes": rss}


async def run(ctx: Context) -> Outcome:
    """Alternate raw find and our warm-up; then measure memory at 10,000 configs."""
    count = ctx.pick(quick=3_000, default=100_000)
    # Three rounds even in quick mode: one sample on a busy machine says nothing.
    rounds = ctx.pick(quick=3, default=3, full=5)
    logs = ctx.logs(NAME)
    raw: list[float] = []
    ready: list[float] = []
    warmed: list[float] = []
    ctx.log(f"   seeding {count:,} documents of ~{DOC_BYTES} B")
    docs = [make_config(i, size=DOC_BYTES) for i in range(count)]
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(ours.redis_server())
        mongo_uri = await stack.enter_async_context(ours.mongo_double(docs, logs))
        del docs
        redis = aioredis.Redis.from_url(server.url)
        stack.push_async_callback(redis.aclose)
        publisher = await ours.FanoutPublisher.create(
            redis, namespace="benchwarm", heartbeat_interval_ms=HEARTBEAT_MS
        )
        stack.push_async_callback(publisher.close)
        for r in range(rounds):
            ns, n = await _raw_find(mongo_uri)
            if n != count:
                raise BenchError(f"find returned {n} of {count} documents")
            raw.append(ns)
            ctx.log(f"   round {r + 1}: raw find {ns / 1e9:.2f}s")
            to_ready, to_warm, size = await _ours_to_ready(mongo_uri, server.url, f"w{r}")
            if size != count:
                raise BenchError(f"our cache holds {size} of {count} documents")
            ready.append(to_ready)
            warmed.append(to_warm)
            ctx.log(
                f"   round {r + 1}: ours warmed {to_warm / 1e9:.2f}s, ready {to_ready / 1e9:.2f}s"
            )
    ctx.log(f"   memory at {MEMORY_CONFIGS:,} configs")
    small = [make_config(i, size=DOC_BYTES) for i in range(MEMORY_CONFIGS)]
    async with ours.mongo_double(small, logs) as small_uri:
        memory = await _memory(small_uri)
    raw_med, ready_med, warm_med = (statistics.median(x) for x in (raw, ready, warmed))
    share = ratio(warm_med, raw_med)
    heartbeat_wait = [r - w for r, w in zip(ready, warmed, strict=True)]
    png = plot_lines(
        ctx.out_dir / "warmup.png",
        title=f"Warm-up with {count:,} documents of ~{DOC_BYTES} B",
        xlabel="round",
        ylabel="seconds",
        series={
            "ours: to ready": (list(range(1, rounds + 1)), [x / 1e9 for x in ready]),
            "ours: to warmed": (list(range(1, rounds + 1)), [x / 1e9 for x in warmed]),
            "raw find().to_list()": (list(range(1, rounds + 1)), [x / 1e9 for x in raw]),
        },
    )
    mib = 1024 * 1024
    rows = [
        Row(
            f"4 warm-up to warmed, {count:,} docs vs raw find",
            fmt_ns(warm_med),
            fmt_ns(raw_med),
            fmt_ratio(share),
            f"<= {TARGET}x",
            share <= TARGET,
        ),
        Row(
            f"4 warm-up to ready (+1st heartbeat, {HEARTBEAT_MS} ms)",
            fmt_ns(ready_med),
            fmt_ns(raw_med),
            fmt_ratio(ratio(ready_med, raw_med)),
            "(context)",
            None,
        ),
        Row(
            f"4 memory per {MEMORY_CONFIGS:,} configs vs plain dict",
            f"{memory['ours']['bytes'] / mib:.1f} MiB",
            f"{memory['dict']['bytes'] / mib:.1f} MiB",
            fmt_ratio(ratio(memory["ours"]["bytes"], memory["dict"]["bytes"])),
            "(context)",
            None,
        ),
    ]
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "documents": count,
        "doc_bytes": DOC_BYTES,
        "heartbeat_interval_ms": HEARTBEAT_MS,
        "raw_find_ns": describe(raw),
        "ours_to_ready_ns": describe(ready),
        "ours_to_warmed_ns": describe(warmed),
        "heartbeat_wait_ns": describe(heartbeat_wait),
        "ratio_warmed_vs_raw": share,
        "ratio_ready_vs_raw": ratio(ready_med, raw_med),
        "target": "ratio_warmed_vs_raw",
        "memory_per_10k_configs": as_jsonable(memory),
    }
    return Outcome(NAME, rows, data, [png])
