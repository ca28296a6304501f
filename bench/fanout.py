"""Benchmark 2: fan-out latency, change published by the watcher → applied in every replica.

For 1 / 10 / 50 subscribing replicas (asyncio tasks spread over a few worker processes,
each with its own Redis connection, :mod:`bench.replicas`):

* **ours**: the watcher's publish path (``watcher.publishing``: encode + the fenced
  ``PUBLISH`` script that assigns the seq) → the real subscriber and cache of ``service``;
  a sample is the time from just before the publish call to the moment the *last*
  replica has the new document in its cache;
* **raw (limit)**: a bare ``PUBLISH`` of the same bytes → bare redis-py subscribers that
  only note the arrival; a sample is publish → the last subscriber received it.

Both subject sets run at the same time against one redis-server, their publishes
alternating with a pause long enough for the previous one to settle, so machine noise
hits both alike. Targets: p99 within 2x of raw, and < 10 ms at 10 replicas.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import ours
from bench.common import (
    Context,
    Outcome,
    Row,
    as_jsonable,
    describe,
    fmt_ns,
    fmt_ratio,
    make_config,
    plot_cdf,
    plot_lines,
    ratio,
)
from bench.replicas import WorkerSet, spread
from tests.support.redis_server import RedisServer

NAME = "fanout"
RAW_CHANNEL = "bench:raw-fanout"
NAMESPACE = "benchfan"
TARGET_VS_RAW = 2.0
TARGET_P99_MS_AT_10 = 10.0
WORKER_PROCESSES = 3
DOC_BYTES = 1024
SEEDED = 200


def _latencies(sent: dict[int, int], replicas: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Per message: ns until the last replica had it; and how many never fully arrived."""
    out: list[float] = []
    lost = 0
    for seq, t0 in sent.items():
        times = [r["applied"].get(str(seq)) for r in replicas]
        if any(t is None for t in times):
            lost += 1
            continue
        out.append(float(max(t for t in times if t is not None) - t0))
    return out, lost


async def _one_size(
    n: int, ctx: Context, server: RedisServer, mongo_uri: str, logs: Path
) -> dict[str, Any]:
    messages = ctx.pick(quick=40, default=1000, full=3000)
    gap = 0.004 + 0.0004 * n  # long enough for the slower side to settle
    redis = aioredis.Redis.from_url(server.url)
    raw_workers, our_workers = WorkerSet(logs), WorkerSet(logs)
    publisher = await ours.FanoutPublisher.create(redis, namespace=NAMESPACE)
    try:
        await raw_workers.start(
            "raw", spread(n, WORKER_PROCESSES), redis=server.url, channel=RAW_CHANNEL
        )
        await our_workers.start(
            "ours",
            spread(n, WORKER_PROCESSES),
            redis=server.url,
            namespace=NAMESPACE,
            mongo=mongo_uri,
        )
        subscribed = await redis.pubsub_numsub(RAW_CHANNEL, publisher.channel)
        ctx.log(f"   {n} replicas subscribed: {subscribed}")
        raw_sent: dict[int, int] = {}
        our_sent: dict[int, int] = {}
        clock = time.perf_counter_ns
        for i in range(messages):
            mark = i + 1
            doc = {**make_config(i % SEEDED, size=DOC_BYTES, version=mark), ours.MARK: mark}
            payload = publisher.wire_form(doc, seq=mark)
            t0 = clock()
            await redis.publish(RAW_CHANNEL, payload)
            raw_sent[mark] = t0
            await asyncio.sleep(gap)
            t0 = clock()
            await publisher.publish(doc)
            our_sent[mark] = t0
            await asyncio.sleep(gap)
        await asyncio.sleep(0.5)
        raw_replicas = await raw_workers.stop()
        our_replicas = await our_workers.stop()
    finally:
        await raw_workers.kill()
        await our_workers.kill()
        await publisher.close()
        await redis.flushall()
        await redis.aclose()
    raw_lat, raw_lost = _latencies(raw_sent, raw_replicas)
    our_lat, our_lost = _latencies(our_sent, our_replicas)
    return {
        "replicas": n,
        "messages": messages,
        "raw": {**describe(raw_lat), "lost": raw_lost},
        "ours": {**describe(our_lat), "lost": our_lost},
        "raw_samples_ns": raw_lat,
        "ours_samples_ns": our_lat,
    }


async def run(ctx: Context) -> Outcome:
    """Sweep the replica counts, plot p50/p99 of both, and judge the 10-replica point."""
    sizes = ctx.pick(quick=[1, 4], default=[1, 10, 50])
    judged = 10 if 10 in sizes else sizes[-1]
    logs = ctx.logs(NAME)
    seeded = [make_config(i, size=DOC_BYTES) for i in range(SEEDED)]
    results: list[dict[str, Any]] = []
    async with ours.redis_server() as server, ours.mongo_double(seeded, logs) as mongo_uri:
        for n in sizes:
            ctx.log(f"   fan-out to {n} replicas")
            results.append(await _one_size(n, ctx, server, mongo_uri, logs))
    ms = 1e6
    series = {
        "ours p99": (sizes, [r["ours"]["p99"] / ms for r in results]),
        "raw p99": (sizes, [r["raw"]["p99"] / ms for r in results]),
        "ours median": (sizes, [r["ours"]["median"] / ms for r in results]),
        "raw median": (sizes, [r["raw"]["median"] / ms for r in results]),
    }
    files = [
        plot_lines(
            ctx.out_dir / "fanout.png",
            title="Fan-out: publish → applied in every replica",
            xlabel="subscribing replicas",
            ylabel="ms until the last replica has it",
            series=series,
            logy=True,
            hlines={"10 ms target": TARGET_P99_MS_AT_10},
        ),
        plot_cdf(
            ctx.out_dir / "fanout_cdf.png",
            title=f"Fan-out latency distribution at {judged} replicas",
            xlabel="ms",
            series={
                subject: [x / ms for x in r[f"{subject}_samples_ns"]]
                for r in results
                if r["replicas"] == judged
                for subject in ("ours", "raw")
            },
        ),
    ]
    at = next(r for r in results if r["replicas"] == judged)
    vs_raw = ratio(at["ours"]["p99"], at["raw"]["p99"])
    rows = [
        Row(
            f"2 fan-out p99 @{judged} replicas vs raw",
            fmt_ns(at["ours"]["p99"]),
            fmt_ns(at["raw"]["p99"]),
            fmt_ratio(vs_raw),
            f"<= {TARGET_VS_RAW:.0f}x",
            vs_raw <= TARGET_VS_RAW,
        ),
        Row(
            f"2 fan-out p99 @{judged} replicas absolute",
            fmt_ns(at["ours"]["p99"]),
            "-",
            "-",
            f"< {TARGET_P99_MS_AT_10:.0f} ms",
            at["ours"]["p99"] < TARGET_P99_MS_AT_10 * ms,
        ),
    ]
    for r in results:
        if r["replicas"] != judged:
            rows.append(
                Row(
                    f"2 fan-out p99 @{r['replicas']} replicas vs raw",
                    fmt_ns(r["ours"]["p99"]),
                    fmt_ns(r["raw"]["p99"]),
                    fmt_ratio(ratio(r["ours"]["p99"], r["raw"]["p99"])),
                    "(context)",
                    None,
                )
            )
    lost = sum(r["ours"]["lost"] + r["raw"]["lost"] for r in results)
    if lost:
        rows.append(Row("2 fan-out messages not applied", str(lost), "0", "-", "0", False))
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "unit": "ns from publish call to applied in the last replica",
        "worker_processes": WORKER_PROCESSES,
        "doc_bytes": DOC_BYTES,
        "sizes": as_jsonable(
            [{k: v for k, v in r.items() if not k.endswith("_samples_ns")} for r in results]
        ),
    }
    return Outcome(NAME, rows, data, files)
