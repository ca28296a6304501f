"""Burst: N inserts as fast as the driver writes them, until every replica holds them all.

The whole path runs for real: this process writes ``N`` new documents into the MongoDB
double with ``insert_many`` (chunks of :data:`CHUNK`, one after another, nothing else in
between); a ``python -m watcher`` process follows the change stream and publishes (with
the default batching settings); ``R`` *real service replicas* (``run_replica`` -- the
service minus HTTP -- several per worker process, :mod:`bench.replicas`) apply the
messages. Each document carries a mark; a replica notes the moment the upsert with that
mark is applied to its cache.

Baseline, in the same run: a plain PyMongo change stream (``watch()`` + ``try_next``, in
a process of its own started before the writes, no decoding beyond PyMongo's own) reading
the same events. Both clocks start just before the first ``insert_many``; ``perf_counter_ns``
is CLOCK_MONOTONIC, system-wide, so times from the processes compare directly.

* **ours**: until the *slowest* replica holds all N documents;
* **baseline**: until the plain stream has read all N events;
* target: ours ≤ 1.5 × baseline (issue 15).

Also recorded: the CPU seconds of every process group (double, watcher, redis-server,
replica workers, plain stream, writer) over the burst -- where the time goes -- and the
number of pub/sub messages and bytes the burst took (a counting subscriber here). The
timeline plot shows changes held by the slowest replica over time against the plain
stream's events read.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
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
    fmt_ratio,
    make_config,
    plot_lines,
    ratio,
)
from bench.propagation import CpuMeter, _settle, wait_until_async_leader
from bench.replicas import WorkerSet, spread
from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.keys import Keys
from tests.support.fleet import Fleet

NAME = "burst"
NAMESPACE = "benchburst"
CHUNK = 1_000
WORKER_PROCESSES = 2
TARGET = 1.5


class Counter:
    """A raw subscriber in this process: pub/sub messages and bytes the burst took."""

    def __init__(self, url: str, channel: str) -> None:
        self._url, self._channel = url, channel
        self.messages = self.bytes = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="burst-counter")
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self._url)
        pubsub: Any = client.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            await pubsub.get_message(timeout=5.0)
            self._ready.set()
            while True:
                m = await pubsub.get_message(timeout=1.0, ignore_subscribe_messages=True)
                if m is not None and b'"heartbeat"' not in m["data"][:200]:
                    self.messages += 1
                    self.bytes += len(m["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _plain_stream(uri: str, expect: int) -> list[int]:
    """The baseline worker: read ``expect`` insert events, note when each arrived."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    coll = client[ours.DATABASE][ours.COLLECTION]
    times: list[int] = []
    clock = time.perf_counter_ns
    try:
        async with await coll.watch(max_await_time_ms=1000) as stream:
            print("READY", flush=True)
            while len(times) < expect:
                change = await stream.try_next()
                if change is not None:
                    times.append(clock())
    finally:
        await client.close()
    return times


async def _start_plain(uri: str, expect: int, out: str, log: Any) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.burst",
        uri,
        str(expect),
        out,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    if line.strip() != b"READY":
        raise BenchError(f"plain change stream did not start (said {line[:200]!r})")
    return proc


async def _write(client: AsyncMongoClient[dict[str, Any]], n: int) -> tuple[int, int]:
    """Insert ``n`` marked documents in chunks; (start, end) ``perf_counter_ns``."""
    coll = client[ours.DATABASE][ours.COLLECTION]
    chunks = [
        [{**make_config(i), KEY_FIELD: f"burst-{i:07d}", ours.MARK: i} for i in range(s, s + CHUNK)]
        for s in range(0, n, CHUNK)
    ]
    chunks[-1] = chunks[-1][: n - CHUNK * (len(chunks) - 1)]
    started = time.perf_counter_ns()
    for chunk in chunks:
        await coll.insert_many(chunk, ordered=True)
    return started, time.perf_counter_ns()


async def _run(
    f: Fleet, ctx: Context, n: int, replicas: int, *, watcher_env: dict[str, str] | None = None
) -> dict[str, Any]:
    assert f.redis is not None and f.mongo is not None
    keys = Keys(NAMESPACE)
    redis = aioredis.Redis.from_url(f.redis.url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f.mongo_uri, **MONGO_DOCUMENT_OPTIONS
    )
    workers = WorkerSet(ctx.logs(NAME))
    counter = Counter(f.redis.url, keys.invalidations)
    plain_out = ctx.logs(NAME) / "plain.json"
    plain: asyncio.subprocess.Process | None = None
    try:
        watcher = await asyncio.to_thread(f.start_watcher, "w-1", **(watcher_env or {}))
        await wait_until_async_leader(redis, keys)
        counts = spread(replicas, WORKER_PROCESSES)
        await workers.start(
            "ours", counts, redis=f.redis.url, namespace=NAMESPACE, mongo=f.mongo_uri
        )
        ids = [f"ours{w}-{i}" for w, c in enumerate(counts) for i in range(c)]
        log = (ctx.logs(NAME) / "plain.log").open("ab")
        try:
            plain = await _start_plain(f.mongo_uri, n, str(plain_out), log)
        finally:
            log.close()
        await counter.start()
        await asyncio.sleep(1.0)  # let the start-up resync and heartbeats pass
        counter.messages = counter.bytes = 0
        seq_before = int(await redis.get(keys.seq) or 0)
        ctx.log(f"   {replicas} replicas ready; writing {n} documents")
        cpu = CpuMeter(
            {
                "mongo_double": [f.mongo.pid],
                "watcher": [watcher.pid],
                "redis_server": [f.redis.pid or 0],
                "replica_workers": workers.pids,
                "writer_and_bench": [os.getpid()],
            }
        )
        before = cpu.sample()
        started, written = await _write(client, n)
        assert plain.stdout is not None
        async with asyncio.timeout(300):
            await plain.stdout.readline()
            await plain.wait()
        await _until_seq(redis, keys, seq_before + n)
        await _settle(redis, keys, ids)
        used = {k: v - before[k] for k, v in cpu.sample().items()}
        info = await redis.info("stats")
        # Redis 7.2+ counts subscribers it cut off for a full output buffer; 7.0 does not.
        dropped = info.get("client_output_buffer_limit_disconnections")
        messages, size = counter.messages, counter.bytes
        reports = await workers.stop()
    finally:
        await counter.stop()
        await workers.kill()
        if plain is not None and plain.returncode is None:
            plain.kill()
            await plain.wait()
        for child in f.watchers.values():
            await asyncio.to_thread(child.stop)
        await client.close()
        await redis.aclose()
    plain_report = orjson.loads(plain_out.read_bytes())
    plain_times = [t - started for t in plain_report["times"]]
    used["plain_stream (whole life)"] = plain_report["cpu_seconds"]
    held = [sorted(v - started for v in r["applied"].values()) for r in reports]
    incomplete = [r["instance_id"] for r, h in zip(reports, held, strict=True) if len(h) < n]
    if incomplete:
        detail = [
            (r["instance_id"], len(h), r["resyncs"], r["last_seq"])
            for r, h in zip(reports, held, strict=True)
        ]
        raise BenchError(
            f"replicas did not apply all {n} documents (a reload loads them instead; "
            f"slow subscribers redis cut off: {dropped if dropped is not None else 'unknown'}"
            f"): {detail}"
        )
    slowest = max(range(len(held)), key=lambda i: held[i][-1])
    return {
        "documents": n,
        "replicas": replicas,
        "write_seconds": (written - started) / 1e9,
        "ours_seconds": held[slowest][-1] / 1e9,
        "baseline_seconds": plain_times[-1] / 1e9,
        "per_replica_seconds": [h[-1] / 1e9 for h in held],
        "messages": messages,
        "message_bytes": size,
        "changes_per_message": n / messages if messages else None,
        "cpu_seconds": used,
        "cpu_ms_per_change": {k: 1000 * v / n for k, v in used.items()},
        "resyncs": sum(sum(r["resyncs"].values()) for r in reports),
        "redis_output_buffer_disconnections": dropped,
        "timeline": {
            "ours_slowest": _curve(held[slowest]),
            "plain_stream": _curve(plain_times),
        },
    }


async def _until_seq(redis: aioredis.Redis, keys: Keys, seq: int) -> None:
    deadline = time.monotonic() + 300
    while int(await redis.get(keys.seq) or 0) < seq:
        if time.monotonic() > deadline:
            raise BenchError(f"the watcher did not publish up to seq {seq} within 300 s")
        await asyncio.sleep(0.05)


def _curve(times_ns: list[int], points: int = 200) -> list[tuple[float, int]]:
    """(seconds, how many held by then) at about ``points`` evenly spaced counts."""
    n = len(times_ns)
    step = max(1, n // points)
    out = [(times_ns[i] / 1e9, i + 1) for i in range(0, n, step)]
    if out[-1][1] != n:
        out.append((times_ns[-1] / 1e9, n))
    return [(0.0, 0), *out]


async def _pass(ctx: Context, n: int, replicas: int, label: str, **env: str) -> dict[str, Any]:
    """One burst in a fresh fleet (``env`` goes to the watcher process)."""
    workdir = ctx.logs(f"{NAME}-{label}-fleet")
    async with ours.fleet([], namespace=NAMESPACE, workdir=workdir) as f:
        return await _run(f, ctx, n, replicas, watcher_env=env)


async def run(ctx: Context) -> Outcome:
    """Write the burst; time ours (slowest replica) against the plain change stream.

    Outside quick mode a second burst runs with batching off
    (``SCC_PUBLISH_BATCH_MAX_CHANGES=1``: one message per change, the design before
    batching), as context for what batching changed.
    """
    n = ctx.pick(quick=5_000, default=100_000)
    replicas = ctx.pick(quick=2, default=10)
    result = await _pass(ctx, n, replicas, "batched")
    unbatched = None
    if not ctx.quick:
        ctx.log("   again with batching off (one message per change)")
        unbatched = await _pass(ctx, n, replicas, "unbatched", SCC_PUBLISH_BATCH_MAX_CHANGES="1")
    timeline = result["timeline"]
    series = {
        "ours (slowest replica)": timeline["ours_slowest"],
        "plain PyMongo change stream": timeline["plain_stream"],
    }
    if unbatched is not None:
        series["ours, batching off (slowest replica)"] = unbatched["timeline"]["ours_slowest"]
    png = plot_lines(
        ctx.out_dir / "burst.png",
        title=f"Burst of {n:,} inserts: held by the slowest of {replicas} replicas",
        xlabel="seconds since the first insert_many",
        ylabel="changes",
        series={k: ([p[0] for p in v], [p[1] for p in v]) for k, v in series.items()},
    )
    value = ratio(result["ours_seconds"], result["baseline_seconds"])
    rows = [
        Row(
            f"15 burst {n:,} inserts → all of {replicas} replicas",
            f"{result['ours_seconds']:.2f}s",
            f"{result['baseline_seconds']:.2f}s",
            fmt_ratio(value),
            f"<= {TARGET}x",
            value <= TARGET,
            f"{result['changes_per_message'] or 0:.0f} changes/message",
        )
    ]
    if unbatched is not None:
        off = ratio(unbatched["ours_seconds"], unbatched["baseline_seconds"])
        rows.append(
            Row(
                "15 burst, batching off (context)",
                f"{unbatched['ours_seconds']:.2f}s",
                f"{unbatched['baseline_seconds']:.2f}s",
                fmt_ratio(off),
                "(context)",
                None,
            )
        )
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "ratio": value,
        **as_jsonable(result),
        "unbatched": None if unbatched is None else as_jsonable(unbatched),
    }
    return Outcome(NAME, rows, data, [png])


def _plain_main(uri: str, expect: int, out: str) -> None:
    times = asyncio.run(_plain_stream(uri, expect))
    Path(out).write_bytes(orjson.dumps({"times": times, "cpu_seconds": time.process_time()}))
    print("DONE", flush=True)


if __name__ == "__main__":
    _plain_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
