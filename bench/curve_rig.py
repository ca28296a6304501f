"""The fan-out curve's moving parts: Redis topologies, the paced publisher, one timed step.

Why a module of its own: :mod:`bench.fanout_curve` searches rates and draws the curve;
this module runs one step of it -- publish ``rate`` changes per second for a while through
the real fenced publish script (:class:`bench.ours.FanoutPublisher`), then ask every
subscriber worker (:mod:`bench.light_subscribers`) what it measured, and read the CPU the
Redis servers spent meanwhile (``INFO cpu``, ``used_cpu_user + used_cpu_sys``).

Topologies: ``primary`` (subscribers on the one Redis that runs the script) and
``replicas`` (a primary and two ``redis-server --replicaof`` replicas; the subscribers
split over the two replicas, where ``PUBLISH`` arrives through replication).

A change is *due* at ``start + k / rate``; its ``bench_t0`` is that moment, so a publisher
that cannot keep the pace shows as latency too. Without batching every due change is one
``send`` awaited after the other (today's watcher); with batching every change due by the
time the previous publish returned goes out in one ``send_batch`` (what the batching
watcher does with one change-stream batch), at most ``batch_max_changes`` per message.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bench.common import BenchError, make_config
from bench.light_subscribers import STEP_FIELD, T0_FIELD, quantile_ns
from bench.ours import FanoutPublisher
from bench.replicas import WorkerSet
from tests.support.redis_server import RedisServer, redis_binary

#: Distinct config keys the changes cycle over (each subscriber's snapshot holds them all).
KEYS = 50


@dataclass
class Topology:
    """The running servers: who runs the script, who delivers to the subscribers."""

    name: str
    primary: RedisServer
    replicas: list[RedisServer]
    clients: dict[str, aioredis.Redis]  # server name -> client (for INFO)

    @property
    def subscriber_urls(self) -> list[str]:
        """Where subscribers connect: the replicas if any, else the primary."""
        return [r.url for r in self.replicas] or [self.primary.url]

    @property
    def delivering(self) -> list[str]:
        """Names of the servers that deliver messages to subscribers."""
        return [n for n in self.clients if n != "primary"] or ["primary"]

    async def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) each server has used so far."""
        out: dict[str, float] = {}
        for name, client in self.clients.items():
            info = await client.info("cpu")
            out[name] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return out

    async def publishes(self) -> int:
        """``PUBLISH`` calls the primary has run (inside scripts too), heartbeats included."""
        stats = await self.clients["primary"].info("commandstats")
        return int(stats.get("cmdstat_publish", {}).get("calls", 0))


@asynccontextmanager
async def topology(name: str, replicas: int):  # type: ignore[no-untyped-def]
    """A primary and ``replicas`` replicas of it, synced; everything stopped after."""
    binary = redis_binary()
    if binary is None:
        raise BenchError("redis-server is not on PATH (apt-get install -y redis-server)")
    async with AsyncExitStack() as stack:
        primary = RedisServer(binary)
        primary.extra = ["--repl-diskless-sync-delay", "0"]  # replicas sync at once
        stack.callback(primary.close)
        await asyncio.to_thread(primary.start)
        servers = [RedisServer(binary) for _ in range(replicas)]
        for server in servers:
            server.extra = ["--replicaof", "127.0.0.1", str(primary.port)]
            stack.callback(server.close)
            await asyncio.to_thread(server.start)
        clients = {"primary": aioredis.Redis.from_url(primary.url)}
        for i, server in enumerate(servers):
            clients[f"replica{i + 1}"] = aioredis.Redis.from_url(server.url)
        for client in clients.values():
            stack.push_async_callback(client.aclose)
        for i in range(replicas):
            await _wait_synced(clients[f"replica{i + 1}"])
        yield Topology(name, primary, servers, clients)


async def _wait_synced(client: aioredis.Redis, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        info = await client.info("replication")
        if info.get("master_link_status") == "up":
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"a replica did not sync with its primary within {within_s:.0f}s")


def _change(k: int, t0: int, step: int, doc_bytes: int) -> dict[str, Any]:
    doc = make_config(k % KEYS, size=doc_bytes, version=k)
    doc[T0_FIELD] = t0
    doc[STEP_FIELD] = step
    return doc


async def publish_paced(
    publisher: FanoutPublisher,
    *,
    rate: float,
    seconds: float,
    step: int,
    batching: bool,
    doc_bytes: int,
) -> dict[str, Any]:
    """Publish ``rate × seconds`` changes on schedule; counts, last seq, CPU and timing."""
    total = max(1, round(rate * seconds))
    gap_ns = 1e9 / rate
    clock = time.perf_counter_ns
    cpu0 = time.process_time()
    start = clock() + 1_000_000
    sent, last_seq = 0, 0
    while sent < total:
        now = clock()
        due = min(total, int((now - start) / gap_ns) + 1)
        if due <= sent:
            await asyncio.sleep((start + sent * gap_ns - now) / 1e9)
            continue
        docs = [_change(k, int(start + k * gap_ns), step, doc_bytes) for k in range(sent, due)]
        if batching:
            seqs = await publisher.publish_many(docs)
        else:
            seqs = [await publisher.publish(doc) for doc in docs]
        last_seq = max(seqs)
        sent = due
    elapsed = (clock() - start) / 1e9
    return {
        "changes": total,
        "last_seq": last_seq,
        "achieved_per_s": total / elapsed if elapsed > 0 else float("inf"),
        "publisher_cpu_s": time.process_time() - cpu0,
    }


async def run_step(
    topo: Topology,
    workers: WorkerSet,
    publisher: FanoutPublisher,
    *,
    subscribers: int,
    rate: float,
    seconds: float,
    step: int,
    batching: bool,
    drain_s: float,
    doc_bytes: int,
    p99_limit_ms: float,
) -> dict[str, Any]:
    """One rate step: publish, wait for delivery, and judge it (p99 and completeness)."""
    cpu0, published0 = await topo.cpu(), await topo.publishes()
    sent = await publish_paced(
        publisher, rate=rate, seconds=seconds, step=step, batching=batching, doc_bytes=doc_bytes
    )
    answers = await workers.ask(f"STATS {step} {sent['last_seq']} {drain_s}", drain_s + 30)
    cpu1, messages = await topo.cpu(), await topo.publishes() - published0
    histogram: dict[int, int] = {}
    for answer in answers:
        for bucket, count in answer["histogram"].items():
            histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
    deliveries = sum(a["deliveries"] for a in answers)
    expected = sent["changes"] * subscribers
    changes = sent["changes"]
    redis_cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
    delivering_cpu = sum(redis_cpu[n] for n in topo.delivering)
    p99 = quantile_ns(histogram, 0.99)
    problems = {k: sum(a[k] for a in answers) for k in ("behind", "gaps", "rejected")}
    subscriber_cpu = sum(a["cpu_s"] for a in answers)
    complete = deliveries >= expected and not any(problems.values())
    return {
        "rate": rate,
        **sent,
        "messages": messages,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        **problems,
        "p50_ns": quantile_ns(histogram, 0.5),
        "p99_ns": p99,
        "sustained": complete and p99 < p99_limit_ms * 1e6,
        "redis_cpu_s": redis_cpu,
        "redis_cpu_per_change_us": 1e6 * delivering_cpu / changes,
        "redis_cpu_per_change_us_by_server": {n: 1e6 * c / changes for n, c in redis_cpu.items()},
        "subscriber_cpu_s": subscriber_cpu,
        "subscriber_cpu_per_delivery_us": 1e6 * subscriber_cpu / max(1, deliveries),
        "publisher_cpu_per_change_us": 1e6 * sent["publisher_cpu_s"] / changes,
    }


async def drain(workers: WorkerSet, last_seq: int, within_s: float = 60.0) -> None:
    """Let every subscriber catch up after an overloaded step (its numbers are dropped)."""
    await workers.ask(f"STATS -1 {last_seq} {within_s}", within_s + 30)
