"""Issue 15 benchmark: the fan-out curve -- the highest change rate delivered with p99 < 100 ms.

For 1, 10, 100, 500 and 1,000 subscribers (lightweight subscriber processes running the
real decode-and-apply path, :mod:`bench.light_subscribers`, several hundred per
process) and four configurations -- one Redis primary or a primary with two replicas
carrying the subscribers, each without and with batching -- a publisher drives the real
fenced publish script at a controlled change rate (:mod:`bench.curve_rig`). Per
configuration and size the rate is searched: doubled while a step is sustained (every
subscriber applied every change, no gap, delivery p99 < 100 ms from the moment the
change was due to the moment it was applied), then bisected between the last sustained
and the first failed rate.

Per step it records delivery p50/p99, the Redis CPU per change of the servers that
deliver (``INFO cpu``) and per server, the subscriber processes' CPU per delivery, and
the publisher's CPU per change. Target: at the largest size, batching + two replicas
sustain >= 10x the rate of today's design (no batching, one primary). On two cores every
subscriber shares the machine, so the *measured* rate there is bounded by the
subscribers' own decoding (``subscriber CPU per delivery × subscribers``); the JSON and
table also give each configuration's Redis-bound capacity (one core divided by the CPU
the busiest Redis server spent per change at the sustained rate), which is what a real
fleet, each replica on its own CPU, would meet first.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import redis.asyncio as aioredis

from bench.common import Context, Outcome, Row, as_jsonable, fmt_ratio, plot_lines
from bench.curve_rig import Topology, drain, run_step, topology
from bench.ours import FanoutPublisher
from bench.replicas import WorkerSet, spread
from shared.errors import StoreUnavailable

NAME = "fanout_curve"
NAMESPACE = "benchcurve"
P99_LIMIT_MS = 100.0
TARGET_RATIO = 10.0
DOC_BYTES = 1024
#: The watcher's default ``SCC_PUBLISH_BATCH_MAX_CHANGES``.
BATCH_MAX_CHANGES = 1000
MIN_RATE, MAX_RATE = 2.0, 200_000.0
#: (label, topology, batching); the first is today's design, the last the target.
CONFIGS: tuple[tuple[str, str, bool], ...] = (
    ("1 primary, unbatched", "primary", False),
    ("1 primary, batched", "primary", True),
    ("2 replicas, unbatched", "replicas", False),
    ("2 replicas, batched", "replicas", True),
)
BASELINE, TARGET = CONFIGS[0][0], CONFIGS[-1][0]


def _plan(ctx: Context) -> dict[str, Any]:
    return {
        "sizes": ctx.pick(quick=[10], default=[1, 10, 100, 500, 1000]),
        "step_s": ctx.pick(quick=0.3, default=1.5, full=3.0),
        "drain_s": ctx.pick(quick=0.5, default=2.0, full=3.0),
        "bisections": ctx.pick(quick=0, default=2, full=4),
        "max_steps": ctx.pick(quick=2, default=14, full=20),
        "first_rate": ctx.pick(quick=100.0, default=100.0),
    }


async def _search(
    topo: Topology,
    workers: WorkerSet,
    publisher: FanoutPublisher,
    *,
    n: int,
    batching: bool,
    start: float,
    plan: dict[str, Any],
    steps: list[int],
) -> dict[str, Any]:
    """Double from ``start`` while sustained, then bisect; the best step and all steps."""
    tried: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failed: float | None = None
    rate, bisections = start, 0
    while len(tried) < plan["max_steps"]:
        steps[0] += 1
        result = await run_step(
            topo,
            workers,
            publisher,
            subscribers=n,
            rate=rate,
            seconds=plan["step_s"],
            step=steps[0],
            batching=batching,
            drain_s=plan["drain_s"],
            doc_bytes=DOC_BYTES,
            p99_limit_ms=P99_LIMIT_MS,
        )
        tried.append(result)
        if result["sustained"]:
            if best is None or rate > best["rate"]:
                best = result
        else:
            failed = rate if failed is None else min(failed, rate)
            await drain(workers, result["last_seq"])
        if failed is None:
            if rate >= MAX_RATE:
                break
            rate = min(MAX_RATE, rate * 2)
        elif best is None:
            if rate <= MIN_RATE:
                break
            rate = max(MIN_RATE, rate / 2)
        else:
            if bisections >= plan["bisections"]:
                break
            bisections += 1
            rate = math.sqrt(best["rate"] * failed)
    return {"sustained_per_s": best["rate"] if best else 0.0, "best": best, "steps": tried}


async def _one_topology(
    ctx: Context, name: str, plan: dict[str, Any], results: dict[str, list[dict[str, Any]]]
) -> None:
    replicas = 2 if name == "replicas" else 0
    async with topology(name, replicas) as topo:
        redis = aioredis.Redis.from_url(topo.primary.url)
        publisher = await _lead(redis)
        steps = [0]
        try:
            for n in plan["sizes"]:
                workers = WorkerSet(ctx.logs(NAME), module="bench.light_subscribers")
                try:
                    await workers.start(
                        "light",
                        spread(n, 2),
                        urls=",".join(topo.subscriber_urls),
                        channel=publisher.channel,
                    )
                    for label, topo_name, batching in CONFIGS:
                        if topo_name != name:
                            continue
                        earlier = results[label]
                        start = plan["first_rate"]
                        if earlier:  # more subscribers sustain less: start below the last
                            start = max(MIN_RATE, earlier[-1]["sustained_per_s"] / 2)
                        ctx.log(f"   {label}: {n} subscribers, from {start:,.0f} changes/s")
                        found = await _search(
                            topo,
                            workers,
                            publisher,
                            n=n,
                            batching=batching,
                            start=start,
                            plan=plan,
                            steps=steps,
                        )
                        ctx.log(f"      sustained {found['sustained_per_s']:,.0f} changes/s")
                        results[label].append({"subscribers": n, **found})
                    await workers.stop()
                finally:
                    await workers.kill()
        finally:
            await publisher.close()
            await redis.aclose()


async def _lead(redis: aioredis.Redis, tries: int = 20) -> FanoutPublisher:
    """Take the lease as a watcher does: retried while the replicas have not confirmed it
    (a lease acquisition waits for every connected replica, which a loaded machine or a
    replica that just synced can miss)."""
    for _ in range(tries - 1):
        try:
            return await FanoutPublisher.create(
                redis, namespace=NAMESPACE, batch_max_changes=BATCH_MAX_CHANGES
            )
        except StoreUnavailable:
            await asyncio.sleep(0.2)
    return await FanoutPublisher.create(
        redis, namespace=NAMESPACE, batch_max_changes=BATCH_MAX_CHANGES
    )


def _at(results: dict[str, list[dict[str, Any]]], label: str, n: int) -> dict[str, Any]:
    return next(r for r in results[label] if r["subscribers"] == n)


def _measured(point: dict[str, Any]) -> dict[str, Any]:
    """The step whose CPU figures represent a point: the best, else the slowest tried."""
    return point["best"] or min(point["steps"], key=lambda step: step["rate"])


def _capacity(point: dict[str, Any]) -> float:
    """Changes/s the busiest Redis server could take on one core, at the best step."""
    busiest = max(_measured(point)["redis_cpu_per_change_us_by_server"].values())
    return 1e6 / busiest if busiest > 0 else math.inf


def _rows(results: dict[str, list[dict[str, Any]]], n: int) -> list[Row]:
    base, target = _at(results, BASELINE, n), _at(results, TARGET, n)
    measured = (
        target["sustained_per_s"] / base["sustained_per_s"] if base["sustained_per_s"] else 0.0
    )
    capacity = _capacity(target) / _capacity(base) if _capacity(base) else 0.0
    rows = [
        Row(
            f"15 fan-out sustained @{n} subs: batched+2 replicas vs today",
            f"{target['sustained_per_s']:,.0f}/s",
            f"{base['sustained_per_s']:,.0f}/s",
            fmt_ratio(measured),
            f">= {TARGET_RATIO:.0f}x",
            measured >= TARGET_RATIO,
        ),
        Row(
            f"15 fan-out Redis-bound capacity @{n} subs vs today",
            f"{_capacity(target):,.0f}/s",
            f"{_capacity(base):,.0f}/s",
            fmt_ratio(capacity),
            "(limit)",
            None,
        ),
    ]
    decode_us = _measured(target)["subscriber_cpu_per_delivery_us"]
    cores = os.cpu_count() or 1
    rows.append(
        Row(
            f"15 fan-out @{n} subs: decode limit of {cores} cores (subscriber CPU)",
            f"{1e6 * cores / (n * decode_us):,.0f}/s",
            f"{decode_us:.1f} µs/delivery",
            "-",
            "(limit)",
            None,
        )
    )
    for label, _, _ in CONFIGS:
        best = _measured(_at(results, label, n))
        rows.append(
            Row(
                f"15 fan-out @{n} subs {label}: p99, sub CPU/delivery, Redis CPU/change",
                f"{best['p99_ns'] / 1e6:.1f} ms @{best['rate']:,.0f}/s",
                f"{best['subscriber_cpu_per_delivery_us']:.1f} µs",
                f"{best['redis_cpu_per_change_us']:,.0f} µs",
                "(context)",
                None,
            )
        )
    return rows


async def run(ctx: Context) -> Outcome:
    """Search every configuration at every size; plot the curve; judge the largest size."""
    plan = _plan(ctx)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in CONFIGS}
    for name in ("primary", "replicas"):
        await _one_topology(ctx, name, plan, results)
    sizes = plan["sizes"]
    curve = {label: (sizes, [r["sustained_per_s"] for r in rs]) for label, rs in results.items()}
    cpu = {
        label: (sizes, [_measured(r)["redis_cpu_per_change_us"] for r in rs])
        for label, rs in results.items()
    }
    files = [
        plot_lines(
            ctx.out_dir / "fanout_curve.png",
            title=f"Fan-out: highest change rate with delivery p99 < {P99_LIMIT_MS:.0f} ms",
            xlabel="subscribers",
            ylabel="sustained changes per second",
            series=curve,
            logx=True,
            logy=True,
        ),
        plot_lines(
            ctx.out_dir / "fanout_curve_redis_cpu.png",
            title="Redis CPU per change (delivering servers), at the sustained rate",
            xlabel="subscribers",
            ylabel="µs of Redis CPU per change",
            series=cpu,
            logx=True,
            logy=True,
        ),
    ]
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "plan": plan,
        "p99_limit_ms": P99_LIMIT_MS,
        "doc_bytes": DOC_BYTES,
        "batch_max_changes": BATCH_MAX_CHANGES,
        "configs": [{"label": c[0], "topology": c[1], "batching": c[2]} for c in CONFIGS],
        "results": as_jsonable(results),
        "redis_bound_capacity_per_s": {
            label: {str(r["subscribers"]): _capacity(r) for r in rs}
            for label, rs in results.items()
        },
    }
    return Outcome(NAME, _rows(results, sizes[-1]), data, files)
