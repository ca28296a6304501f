"""Benchmark 1: the cost of a lookup hit at 10 / 1,000 / 10,000 / 100,000 configs.

Subjects: our cache's synchronous hot path (``ConfigCache.peek``, what a caller tries
first) and its async lookup (``await get_config_by_source_id``, which a caller awaits
when ``peek`` answers ``None``), the per-replica design's (linear scan + OTel ``add``),
and a plain ``dict.get`` (the limit; also wrapped in an ``async def``, the floor of any
awaited lookup). Each is timed in batches of lookups of random
existing keys (``time.perf_counter_ns`` around a batch, ns per lookup per batch), the
subjects interleaved round by round so machine drift hits all alike. The loop overhead
(``for key in keys``) is inside every subject's figure, the same for all.

Targets (issue 7): ≥ 100x faster than the per-replica design at 10,000 configs, and
within 3x of ``dict.get``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench import ours
from bench.common import (
    KEY_FIELD,
    Context,
    Outcome,
    Row,
    as_jsonable,
    batch_size_for,
    describe,
    fmt_ns,
    fmt_ratio,
    key_of,
    make_config,
    plot_lines,
    ratio,
    time_batches,
    time_batches_async,
)
from bench.per_replica import PerReplicaCache, make_meter

NAME = "lookup"
SIZES_FULL = [10, 1_000, 10_000, 100_000]
SIZES_QUICK = [10, 1_000, 10_000]
TARGET_SIZE = 10_000
TARGET_VS_PER_REPLICA = 100.0
TARGET_VS_DICT = 3.0
OURS = "ours: ConfigCache.peek (sync)"
OURS_ASYNC = "ours: await get_config_by_source_id"
PER_REPLICA = "per-replica design"
DICT = "dict.get"
ASYNC_DICT = "dict.get in async def"


@dataclass
class Subject:
    """A way to look a key up: sync (``get``) or async (``aget``)."""

    label: str
    get: Callable[[str], Any] | None = None
    aget: Callable[[str], Awaitable[Any]] | None = None


async def _measure(subject: Subject, keys: list[str], per_batch: int, batches: int) -> list[float]:
    chunk = keys[:per_batch]
    if subject.get is not None:
        get = subject.get

        def run_sync() -> None:
            for key in chunk:
                get(key)

        run_sync()  # warm
        return time_batches(run_sync, per_batch, batches)
    aget = subject.aget
    assert aget is not None

    async def run_async() -> None:
        for key in chunk:
            await aget(key)

    await run_async()
    return await time_batches_async(run_async, per_batch, batches)


async def _probe(subject: Subject, keys: list[str]) -> float:
    """A rough ns-per-lookup estimate, to size the batches."""
    samples = await _measure(subject, keys, min(len(keys), 5), 3)
    return min(samples)


async def _one_size(n: int, ctx: Context, rng: random.Random) -> dict[str, Any]:
    docs = [make_config(i) for i in range(n)]
    keys = [key_of(rng.randrange(n)) for _ in range(4_096)]
    plain = {doc[KEY_FIELD]: doc for doc in docs}
    meter, provider = make_meter()
    per_replica = PerReplicaCache(None, meter=meter, docs=docs)

    async def async_dict_get(key: str) -> Any:
        return plain.get(key)

    ours_subject = await ours.lookup_subject(docs)
    subjects = [
        Subject(DICT, get=plain.get),
        Subject(ASYNC_DICT, aget=async_dict_get),
        Subject(OURS, get=ours_subject.peek),
        Subject(OURS_ASYNC, aget=ours_subject.aget),
        Subject(PER_REPLICA, aget=per_replica.get),
    ]
    rounds = ctx.pick(quick=2, default=5, full=10)
    budget_ns = ctx.pick(quick=20e6, default=150e6, full=400e6)  # per subject and round
    samples: dict[str, list[float]] = {s.label: [] for s in subjects}
    sizing = {s.label: await _probe(s, keys) for s in subjects}
    for _ in range(rounds):
        for s in subjects:
            per_batch = min(len(keys), batch_size_for(sizing[s.label]))
            batch_ns = sizing[s.label] * per_batch
            batches = max(5, min(400, int(budget_ns / max(batch_ns, 1.0))))
            samples[s.label].extend(await _measure(s, keys, per_batch, batches))
    provider.shutdown()
    await ours_subject.close()
    return {"n": n, "stats": {label: describe(v) for label, v in samples.items()}}


async def run(ctx: Context) -> Outcome:
    """Sweep the sizes, plot median ns per lookup, and judge the 10,000-config point."""
    rng = random.Random(7)
    sizes = ctx.pick(quick=SIZES_QUICK, default=SIZES_FULL)
    results = []
    for n in sizes:
        ctx.log(f"   lookup at {n:,} configs")
        results.append(await _one_size(n, ctx, rng))
    labels = list(results[0]["stats"])
    series = {label: (sizes, [r["stats"][label]["median"] for r in results]) for label in labels}
    png = plot_lines(
        ctx.out_dir / "lookup.png",
        title="Lookup hit cost (median ns per lookup)",
        xlabel="configs in the cache",
        ylabel="ns per lookup",
        series=series,
        logx=True,
        logy=True,
    )
    at = next(r for r in results if r["n"] == TARGET_SIZE)["stats"]
    o, oa, pr, d = at[OURS], at[OURS_ASYNC], at[PER_REPLICA], at[DICT]
    speedup = ratio(pr["median"], o["median"])
    vs_dict = ratio(o["median"], d["median"])
    rows = [
        Row(
            "1 lookup hit @10k vs per-replica (median)",
            fmt_ns(o["median"]),
            fmt_ns(pr["median"]),
            f"{fmt_ratio(speedup)} faster",
            f">= {TARGET_VS_PER_REPLICA:.0f}x faster",
            speedup >= TARGET_VS_PER_REPLICA,
        ),
        Row(
            "1 lookup hit @10k vs dict.get (median)",
            fmt_ns(o["median"]),
            fmt_ns(d["median"]),
            fmt_ratio(vs_dict),
            f"<= {TARGET_VS_DICT:.0f}x",
            vs_dict <= TARGET_VS_DICT,
        ),
        Row(
            "1 lookup hit @10k vs dict.get (p99)",
            fmt_ns(o["p99"]),
            fmt_ns(d["p99"]),
            fmt_ratio(ratio(o["p99"], d["p99"])),
            "(context)",
            None,
        ),
        Row(
            "1 async lookup hit @10k vs dict.get in async def",
            fmt_ns(oa["median"]),
            fmt_ns(at[ASYNC_DICT]["median"]),
            fmt_ratio(ratio(oa["median"], at[ASYNC_DICT]["median"])),
            "(context)",
            None,
        ),
    ]
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "unit": "ns per lookup (per batch of random hits)",
        "subjects": labels,
        "sizes": as_jsonable(results),
        "at_10k": {
            "speedup_vs_per_replica": speedup,
            "ratio_vs_dict_get": vs_dict,
            "async_ratio_vs_dict_get": ratio(oa["median"], d["median"]),
            "async_ratio_vs_async_dict_get": ratio(oa["median"], at[ASYNC_DICT]["median"]),
        },
    }
    return Outcome(NAME, rows, data, [png])
