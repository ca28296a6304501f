"""Benchmark 8: graceful handover, SIGTERM of the leader → first publish by the new leader.

A rolling restart stops each watcher with SIGTERM. The stopping leader saves its token,
releases the lease and announces it on ``{ns}:handover``; the standby that hears it takes
the lease at once and publishes as soon as its change stream is open. Two
``python -m watcher`` processes share a redis-server and the MongoDB double, a writer
updates a document every 20 ms; one trial SIGTERMs the leader and times until the first
message of a higher epoch arrives, then restarts the stopped process as the new standby
(20 restarts by default).

Baseline, measured nowhere but implied by the lease: without the announcement a standby
learns that the lease is free only at its next poll (0.2 × TTL) -- the figure the ratio
is taken against. Target: p99 < 100 ms.
"""

from __future__ import annotations

import asyncio
import signal
import time

import redis.asyncio as aioredis

from bench import ours
from bench.common import (
    BenchError,
    Context,
    Outcome,
    Row,
    as_jsonable,
    describe,
    fmt_ns,
    fmt_ratio,
    make_config,
    plot_cdf,
    wait_until,
)
from bench.failover import Observer, _steady_leader, _writer
from shared.keys import Keys
from shared.settings import TimingSettings
from tests.support.fleet import Fleet

NAME = "handover"
NAMESPACE = "benchhandover"
TARGET_NS = 100e6
POLL_FRACTION = 0.2


async def _trials(f: Fleet, ttl_ms: int, trials: int, ctx: Context) -> list[float]:
    keys = Keys(NAMESPACE)
    if f.redis is None:
        raise BenchError("the fleet has no redis-server")
    redis = aioredis.Redis.from_url(f.redis.url)
    observer, ready = Observer(), asyncio.Event()
    env = {"SCC_LEADER_TTL_MS": str(ttl_ms)}
    out: list[float] = []
    started_at: dict[str, float] = {}
    async with asyncio.TaskGroup() as group:
        watch = group.create_task(observer.run(redis, keys.invalidations, ready), name="observer")
        writer = group.create_task(_writer(f.mongo_uri, 50), name="writer")
        try:
            await ready.wait()
            for name in ("w-a", "w-b"):
                started_at[name] = time.time()
                await asyncio.to_thread(f.start_watcher, name, **env)
            for trial in range(trials):
                leader = await _steady_leader(f, redis, keys, observer, started_at)
                epoch = observer.max_epoch()
                child = f.watchers[leader]
                stopped_at = time.perf_counter_ns()
                child.signal(signal.SIGTERM)
                await wait_until(
                    lambda e=epoch, t=stopped_at: observer.first_above(e, t) is not None,  # type: ignore[misc]
                    what=f"a new leader publishing after SIGTERM of {leader}",
                    within_s=ttl_ms / 1000 + 30,
                    interval_s=0.001,
                )
                first = observer.first_above(epoch, stopped_at)
                assert first is not None
                out.append(float(first - stopped_at))
                ctx.log(f"   restart {trial + 1}: {(first - stopped_at) / 1e6:.1f} ms")
                assert child.proc is not None
                await asyncio.to_thread(child.proc.wait, 30)  # its own clean stop, no 2nd signal
                status = await asyncio.to_thread(child.stop)
                if status != 0:
                    raise BenchError(f"{leader} exited {status} after SIGTERM")
                started_at[leader] = time.time()
                child.start()
        finally:
            watch.cancel()
            writer.cancel()
            for child in list(f.watchers.values()):
                await asyncio.to_thread(child.stop, kill=True)
            f.watchers.clear()
            await redis.delete(keys.leader)
            await redis.aclose()
    return out


async def run(ctx: Context) -> Outcome:
    """20 rolling restarts at the default TTL (quick: 2, full: 40)."""
    ttl = int(TimingSettings.model_fields["leader_ttl_ms"].default)
    trials = ctx.pick(quick=2, default=20, full=40)
    docs = [make_config(i) for i in range(50)]
    async with ours.fleet(docs, namespace=NAMESPACE, workdir=ctx.logs(NAME)) as f:
        ctx.log(f"   lease ttl {ttl} ms: {trials} rolling restarts")
        samples = await _trials(f, ttl, trials, ctx)
    png = plot_cdf(
        ctx.out_dir / "handover.png",
        title="Graceful handover: SIGTERM of the leader → first publish of the new one",
        xlabel="milliseconds",
        series={f"ttl {ttl / 1000:g} s": [x / 1e6 for x in samples]},
        logx=False,
    )
    stats = describe(samples)
    poll_ns = ttl * 1e6 * POLL_FRACTION
    rows = [
        Row(
            f"8 handover p99, SIGTERM → first publish (n={len(samples)})",
            fmt_ns(stats["p99"]),
            fmt_ns(poll_ns) + " (poll)",
            fmt_ratio(stats["p99"] / poll_ns),
            "< 100 ms",
            stats["p99"] < TARGET_NS,
        ),
        Row(
            "8 handover median",
            fmt_ns(stats["median"]),
            fmt_ns(poll_ns) + " (poll)",
            fmt_ratio(stats["median"] / poll_ns),
            "(context)",
            None,
        ),
    ]
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "ttl_ms": ttl,
        "standby_poll_ms": poll_ns / 1e6,
        "stats_ns": describe(samples),
        "samples_ns": as_jsonable(samples),
    }
    return Outcome(NAME, rows, data, [png])
