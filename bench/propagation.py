"""Benchmark 7: propagation under write load, and zero divergence at the end.

The whole path runs for real: a writer in this process changes the collection of the
MongoDB double at a steady rate (90 % updates, 5 % inserts, 5 % deletes); a
``python -m watcher`` process follows the change stream and publishes; N replicas
(``run_replica``, the service minus HTTP, as asyncio tasks over a few worker processes;
:mod:`bench.replicas`) apply the messages. Every written document carries a mark; a
replica notes when the upsert with that mark reaches its cache.

* **lag** of one change at one replica: write issued (``perf_counter_ns`` just before the
  command is sent) → applied in that replica's cache; median and p99 over every
  (change, replica) pair;
* **divergence**: once the writer stopped and every replica caught up with ``{ns}:seq``,
  each replica's cache fingerprint (:func:`bench.ours.digest` over its documents) is
  compared with the collection's, read with ``find``. Target: every replica equal.

Phases: a light *reference* phase (100 changes/s; default and full mode) shows the lag
of an unsaturated pipeline, then the *load* phase (1,000 changes/s). For each phase the
CPU seconds of every process group (double, watcher, redis-server, replica workers, this
process as the writer) are recorded, per change and as cores busy, so a lag that comes
from a saturated machine can be told from one that comes from the design.

Target: p99 lag reported (issue 7 sets no number) and zero divergence; the verdict is
the divergence. The bare ``PUBLISH`` fan-out of benchmark 2 is the floor under the lag.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import time
from collections.abc import Awaitable, Callable
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
    key_of,
    make_config,
    plot_cdf,
)
from bench.replicas import WorkerSet, spread
from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.keys import Keys
from shared.status import ReplicaStatus
from tests.support.fleet import Fleet

NAME = "propagation"
NAMESPACE = "benchprop"
WRITERS = 16
WORKER_PROCESSES = 2
RATE = 1_000.0


class Writer:
    """Issues change ``i`` at ``start + i / rate`` from several tasks; records write times."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], configs: int, *, first_mark: int
    ) -> None:
        self._coll = client[ours.DATABASE][ours.COLLECTION]
        self._configs = configs
        self._first_mark = first_mark
        self.written: dict[int, int] = {}  # mark → perf_counter_ns when issued
        self.key_of_mark: dict[int, str] = {}
        self.inserted: list[str] = []
        self.deletes = 0
        self.behind_max_s = 0.0

    async def run(self, rate: float, seconds: float) -> float:
        """Write for ``seconds`` at ``rate`` changes/s; returns the achieved rate."""
        total = int(rate * seconds)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)
        start = time.monotonic()

        async def one_writer() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                due = start + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    self.behind_max_s = max(self.behind_max_s, -delay)
                await self._one(i)

        async with asyncio.TaskGroup() as group:
            for w in range(WRITERS):
                group.create_task(one_writer(), name=f"writer-{w}")
        return total / (time.monotonic() - start)

    async def _one(self, i: int) -> None:
        mark = self._first_mark + i
        kind = i % 20
        if kind == 0:
            key = f"new-{mark:08d}"
            doc = {**make_config(i), KEY_FIELD: key, ours.MARK: mark}
            self.key_of_mark[mark] = key
            self.written[mark] = time.perf_counter_ns()
            await self._coll.insert_one(doc)
            self.inserted.append(key)
        elif kind == 10 and self.inserted:
            self.deletes += 1
            await self._coll.delete_one({KEY_FIELD: self.inserted.pop(0)})
        else:
            key = key_of(i % self._configs)
            self.key_of_mark[mark] = key
            self.written[mark] = time.perf_counter_ns()
            await self._coll.update_one(
                {KEY_FIELD: key},
                {"$set": {ours.MARK: mark, "version": mark}},
            )


async def _caught_up(redis: aioredis.Redis, keys: Keys, ids: list[str]) -> bool:
    seq = int(await redis.get(keys.seq) or 0)
    for instance in ids:
        status = ReplicaStatus.from_hash(await redis.hgetall(keys.replica(instance)))
        if status.last_seq != seq:
            return False
    return True


async def _settle(redis: aioredis.Redis, keys: Keys, ids: list[str]) -> None:
    """Wait until ``{ns}:seq`` stopped moving and every replica reports it."""
    deadline = time.monotonic() + 120
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seq = int(await redis.get(keys.seq) or 0)
        if seq != last:
            last, stable_since = seq, time.monotonic()
        elif time.monotonic() - stable_since > 2.5 and await _caught_up(redis, keys, ids):
            return
        await asyncio.sleep(0.1)
    raise BenchError("replicas did not catch up with the watcher within 120 s after writing")


class CpuMeter:
    """CPU seconds used by groups of processes between two samples."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = {name: [psutil.Process(p) for p in pids] for name, pids in groups.items()}

    def sample(self) -> dict[str, float]:
        """Cumulative CPU seconds per group now."""
        out: dict[str, float] = {}
        for name, procs in self._groups.items():
            total = 0.0
            for proc in procs:
                times = proc.cpu_times()
                total += times.user + times.system
            out[name] = total
        return out


async def _phase(
    label: str,
    rate: float,
    seconds: float,
    *,
    writer: Writer,
    settle: Callable[[], Awaitable[None]],
    cpu: CpuMeter,
    ctx: Context,
) -> dict[str, Any]:
    ctx.log(f"   {label}: writing {rate:.0f}/s for {seconds:g}s")
    before, started = cpu.sample(), time.monotonic()
    achieved = await writer.run(rate, seconds)
    ctx.log(f"   {label}: wrote at {achieved:.0f}/s; waiting for the replicas to catch up")
    await settle()
    after, wall = cpu.sample(), time.monotonic() - started
    changes = len(writer.written) + writer.deletes
    used = {name: after[name] - before[name] for name in after}
    return {
        "label": label,
        "rate_target": rate,
        "rate_achieved": achieved,
        "writer_behind_max_s": writer.behind_max_s,
        "seconds": seconds,
        "changes": changes,
        "cpu_seconds": used,
        "cpu_ms_per_change": {name: 1000 * v / changes for name, v in used.items()},
        "cores_busy": {name: v / wall for name, v in used.items()},
        "wall_seconds_until_settled": wall,
    }


async def _run(
    f: Fleet, ctx: Context, replicas: int, phases: list[tuple[str, float, float]], configs: int
) -> dict[str, Any]:
    assert f.redis is not None and f.mongo is not None
    keys = Keys(NAMESPACE)
    redis = aioredis.Redis.from_url(f.redis.url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f.mongo_uri, **MONGO_DOCUMENT_OPTIONS
    )
    workers = WorkerSet(ctx.logs(NAME))
    results: list[dict[str, Any]] = []
    writers: list[Writer] = []
    try:
        watcher = await asyncio.to_thread(f.start_watcher, "w-1")
        await wait_until_async_leader(redis, keys)
        counts = spread(replicas, WORKER_PROCESSES)
        await workers.start(
            "ours", counts, redis=f.redis.url, namespace=NAMESPACE, mongo=f.mongo_uri
        )
        ids = [f"ours{w}-{i}" for w, n in enumerate(counts) for i in range(n)]
        ctx.log(f"   {replicas} replicas ready")
        cpu = CpuMeter(
            {
                "mongo_double": [f.mongo.pid],
                "watcher": [watcher.pid],
                "redis_server": [f.redis.pid or 0],
                "replica_workers": workers.pids,
                "writer_and_bench": [os.getpid()],
            }
        )
        first_mark = 1
        for label, rate, seconds in phases:
            writer = Writer(client, configs, first_mark=first_mark)
            first_mark += int(rate * seconds) + 1
            writers.append(writer)
            results.append(
                await _phase(
                    label,
                    rate,
                    seconds,
                    writer=writer,
                    settle=lambda: _settle(redis, keys, ids),
                    cpu=cpu,
                    ctx=ctx,
                )
            )
        reports = await workers.stop()
        truth = ours.digest(await client[ours.DATABASE][ours.COLLECTION].find({}).to_list())
        size = await client[ours.DATABASE][ours.COLLECTION].count_documents({})
    finally:
        await workers.kill()
        for child in f.watchers.values():
            await asyncio.to_thread(child.stop)
        await client.close()
        await redis.aclose()
    for phase, writer in zip(results, writers, strict=True):
        lags, worst, superseded, missing = _lags(writer, reports)
        phase.update(
            {
                "lag_ns": describe(lags),
                "lag_worst_replica_ns": describe([float(v) for v in worst.values()]),
                "samples_superseded": superseded,
                "samples_missing": missing,
                "samples_ns": lags,
            }
        )
    return {
        "replicas": replicas,
        "phases": results,
        "collection_size": size,
        "diverged": [r["instance_id"] for r in reports if r["digest"] != truth],
        "replica_reports": [{k: v for k, v in r.items() if k != "applied"} for r in reports],
    }


def _lags(
    writer: Writer, reports: list[dict[str, Any]]
) -> tuple[list[float], dict[int, int], int, int]:
    """Lag samples, worst lag per change, and how many changes were seen late or never.

    The watcher reads post-images with ``updateLookup``, so when a key changes twice in
    quick succession both messages may carry the newer document: the older mark is then
    never applied on its own, but the replica has seen the change (in a newer version)
    when the newer mark lands. Such a change counts as *superseded* and its lag runs to
    that moment; one whose key never reached a version at least as new is *missing*.
    """
    lags: list[float] = []
    worst: dict[int, int] = {}
    superseded = missing = 0
    for report in reports:
        by_key: dict[str, list[tuple[int, int]]] = {}
        for raw_mark, at in report["applied"].items():
            mark = int(raw_mark)
            key = writer.key_of_mark.get(mark)
            if key is not None:
                by_key.setdefault(key, []).append((mark, at))
        for seen in by_key.values():
            seen.sort()
        for mark, written in writer.written.items():
            seen = by_key.get(writer.key_of_mark[mark], [])
            i = bisect.bisect_left(seen, (mark, -1))
            if i == len(seen):
                missing += 1
                continue
            if seen[i][0] != mark:
                superseded += 1
            lag = seen[i][1] - written
            lags.append(float(lag))
            worst[mark] = max(worst.get(mark, 0), lag)
    return lags, worst, superseded, missing


async def wait_until_async_leader(redis: aioredis.Redis, keys: Keys) -> None:
    """Wait until some watcher holds the lease and has published (seq or heartbeat)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await redis.get(keys.leader) is not None:
            return
        await asyncio.sleep(0.05)
    raise BenchError("no watcher took the lease within 60 s")


async def run(ctx: Context) -> Outcome:
    """A light reference phase, then the sustained load; lag and the divergence verdict."""
    replicas = ctx.pick(quick=3, default=10)
    load = ("load", RATE, ctx.pick(quick=2.0, default=30.0, full=60.0))
    reference = ("reference", 100.0, ctx.pick(quick=0.0, default=10.0, full=20.0))
    phases = [reference, load] if reference[2] else [load]
    configs = ctx.pick(quick=200, default=1_000)
    docs = [make_config(i) for i in range(configs)]
    async with ours.fleet(docs, namespace=NAMESPACE, workdir=ctx.logs(f"{NAME}-fleet")) as f:
        result = await _run(f, ctx, replicas, phases, configs)
    png = plot_cdf(
        ctx.out_dir / "propagation.png",
        title=f"Write → applied in a replica, {replicas} replicas",
        xlabel="ms",
        series={
            f"{p['rate_achieved']:.0f} changes/s ({p['label']})": [
                x / 1e6 for x in p.pop("samples_ns")
            ]
            for p in result["phases"]
        },
    )
    rows: list[Row] = []
    for p in result["phases"]:
        lag = p["lag_ns"]
        rows.append(
            Row(
                f"7 propagation lag p99 / median @{p['rate_achieved']:.0f}/s ({p['label']})",
                f"{fmt_ns(lag.get('p99', math.nan))} / {fmt_ns(lag.get('median', math.nan))}",
                "-",
                "-",
                "(reported)",
                None,
            )
        )
    diverged = result["diverged"]
    rows.append(
        Row(
            f"7 replicas diverged from MongoDB at the end ({replicas})",
            str(len(diverged)),
            "-",
            "-",
            "0",
            not diverged,
        )
    )
    main = result["phases"][-1]
    resyncs = sum(sum(r["resyncs"].values()) for r in result["replica_reports"])
    missing = sum(p["samples_missing"] for p in result["phases"])
    if resyncs or missing:
        rows.append(
            Row(
                "7 resyncs / (change, replica) never seen",
                f"{resyncs} / {missing}",
                "-",
                "-",
                "(context)",
                None,
            )
        )
    if main["rate_achieved"] < 0.95 * RATE:
        rows.append(
            Row(
                "7 write rate achieved (load phase)",
                f"{main['rate_achieved']:.0f}/s",
                f"{RATE:.0f}/s",
                "-",
                ">= 95% of target",
                False,
            )
        )
    data = {"benchmark": NAME, "mode": ctx.mode, **as_jsonable(result)}
    return Outcome(NAME, rows, data, [png])
