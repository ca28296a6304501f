"""Benchmark 6: failover, SIGKILL of the leader watcher → first publish by the new leader.

Two ``python -m watcher`` processes share a redis-server and the MongoDB double; a
writer updates a document every 20 ms, so a leader always has something to publish
(and heartbeats go out every second anyway). The bench subscribes to the channel and
notes the epoch of every message. One trial: find the leader (``{ns}:leader``), wait
until its messages flow, ``SIGKILL`` it, and time until the first message carrying a
higher epoch arrives; then restart the killed process as the new standby.

The lease cannot be taken over before it expires, so the baseline is the lease TTL
itself (the floor of any lease-based failover). Target: p99 ≤ TTL + 0.5 s, for the
default TTL and for a 1 s TTL.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

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
    key_of,
    make_config,
    plot_cdf,
    wait_until,
)
from shared.batches import decode_batch
from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.errors import MessageError
from shared.keys import Keys
from shared.settings import TimingSettings
from shared.status import WatcherStatus
from tests.support.fleet import Fleet

NAME = "failover"
NAMESPACE = "benchfail"
SLACK_S = 0.5
WRITE_EVERY_S = 0.02


class Observer:
    """Every message on the channel, as (perf_counter_ns, epoch)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def max_epoch(self) -> int:
        """Highest epoch seen so far (0 before any message)."""
        return max((e for _, e in self.seen), default=0)

    def first_above(self, epoch: int, since: int) -> int | None:
        """Time of the first message after ``since`` with an epoch above ``epoch``."""
        for t, e in self.seen:
            if t >= since and e > epoch:
                return t
        return None

    async def run(self, redis: aioredis.Redis, channel: str, ready: asyncio.Event) -> None:
        """Subscribe and record until cancelled."""
        pubsub: Any = redis.pubsub()  # redis-py leaves PubSub untyped
        try:
            await pubsub.subscribe(channel)
            while await pubsub.get_message(timeout=5.0) is None:
                pass
            ready.set()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None or message["type"] != "message":
                    continue
                now = time.perf_counter_ns()
                try:
                    self.seen.append((now, decode_batch(message["data"]).first.epoch))
                except MessageError as e:
                    raise BenchError(f"undecodable message on the channel: {e}") from e
        finally:
            await pubsub.aclose()


async def _writer(uri: str, configs: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **MONGO_DOCUMENT_OPTIONS)
    coll = client[ours.DATABASE][ours.COLLECTION]
    try:
        i = 0
        while True:
            await coll.update_one({KEY_FIELD: key_of(i % configs)}, {"$inc": {"version": 1}})
            i += 1
            await asyncio.sleep(WRITE_EVERY_S)
    finally:
        await client.close()


async def _trials(f: Fleet, ttl_ms: int, trials: int, ctx: Context) -> list[float]:
    keys = Keys(NAMESPACE)
    if f.redis is None:
        raise BenchError("the fleet has no redis-server")
    redis = aioredis.Redis.from_url(f.redis.url)
    observer = Observer()
    ready = asyncio.Event()
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
                killed_at = time.perf_counter_ns()
                child.signal(signal.SIGKILL)
                await wait_until(
                    lambda e=epoch, t=killed_at: observer.first_above(e, t) is not None,  # type: ignore[misc]
                    what=f"a new leader publishing after killing {leader}",
                    within_s=ttl_ms / 1000 + 30,
                    interval_s=0.005,
                )
                first = observer.first_above(epoch, killed_at)
                assert first is not None
                out.append(float(first - killed_at))
                ctx.log(
                    f"   ttl {ttl_ms} ms, trial {trial + 1}: {(first - killed_at) / 1e6:.0f} ms"
                )
                await asyncio.to_thread(child.stop, kill=True)
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


async def _standby_up(redis: aioredis.Redis, keys: Keys, name: str, since: float) -> bool:
    """True once watcher ``name`` wrote its status hash after it was (re)started."""
    status = WatcherStatus.from_hash(await redis.hgetall(keys.watcher(name)))
    return status.started_at is not None and status.started_at >= since - 1.0


async def _steady_leader(
    f: Fleet,
    redis: aioredis.Redis,
    keys: Keys,
    observer: Observer,
    started_at: dict[str, float],
) -> str:
    """The leader's instance id, once it publishes and the other watcher is up."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        raw = await redis.get(keys.leader)
        epoch = await redis.get(keys.epoch)
        leader = raw.decode() if isinstance(raw, bytes) else None
        standbys = [n for n in f.watchers if n != leader]
        steady = (
            leader in f.watchers
            and epoch is not None
            and observer.max_epoch() == int(epoch)
            and all(f.watchers[n].alive for n in f.watchers)
            and all([await _standby_up(redis, keys, n, started_at[n]) for n in standbys])
        )
        if steady and leader is not None:
            return leader
        await asyncio.sleep(0.05)
    raise BenchError("no steady leader with a live standby within 60 s")


async def run(ctx: Context) -> Outcome:
    """20 trials at the default TTL and at 1 s (quick: 2 at 1 s)."""
    default_ttl = int(TimingSettings.model_fields["leader_ttl_ms"].default)
    ttls = ctx.pick(quick=[1_000], default=[default_ttl, 1_000])
    trials = ctx.pick(quick=2, default=20, full=40)
    results: dict[int, list[float]] = {}
    docs = [make_config(i) for i in range(50)]
    async with ours.fleet(docs, namespace=NAMESPACE, workdir=ctx.logs(NAME)) as f:
        for ttl in ttls:
            ctx.log(f"   lease ttl {ttl} ms: {trials} trials")
            results[ttl] = await _trials(f, ttl, trials, ctx)
    png = plot_cdf(
        ctx.out_dir / "failover.png",
        title="Failover: SIGKILL of the leader → first publish of the new one",
        xlabel="seconds",
        series={f"ttl {t / 1000:g} s": [x / 1e9 for x in v] for t, v in results.items()},
        logx=False,
    )
    rows = []
    for ttl, samples in results.items():
        stats = describe(samples)
        limit = (ttl / 1000 + SLACK_S) * 1e9
        rows.append(
            Row(
                f"6 failover p99, ttl {ttl / 1000:g} s (n={len(samples)})",
                fmt_ns(stats["p99"]),
                fmt_ns(ttl * 1e6) + " (ttl)",
                fmt_ratio(stats["p99"] / (ttl * 1e6)),
                f"<= ttl + {SLACK_S} s",
                stats["p99"] <= limit,
            )
        )
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "write_every_s": WRITE_EVERY_S,
        "ttls_ms": {str(t): describe(v) for t, v in results.items()},
        "samples_ns": as_jsonable({str(t): v for t, v in results.items()}),
    }
    data["median_over_ttl"] = {
        str(t): describe(v)["median"] / (t * 1e6) for t, v in results.items()
    }
    return Outcome(NAME, rows, data, [png])
