"""Benchmark 9: Redis failover, SIGKILL of the primary → first change served by every replica.

A real Sentinel group on loopback (1 primary, 2 replicas, 3 sentinels, quorum 2,
``down-after-milliseconds`` 1 s), the MongoDB double, two watchers and three service
replicas, every process configured with the ``redis+sentinel://`` URL only. One trial:
SIGKILL the primary, update a probe config in MongoDB at once, and time until every
replica serves the new version over HTTP; in the same run, time until the sentinels name
the new primary (their own down-after + election + promotion). Then restart the killed
node (Sentinel turns it into a replica) and wait until the group has settled.

Baseline: Sentinel's own promotion time, measured in the same trial. Target: p99 of ours
at most 1 s beyond Sentinel's p99.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench import ours
from bench.common import (
    KEY_FIELD,
    Context,
    Outcome,
    Row,
    as_jsonable,
    describe,
    fmt_ns,
    fmt_ratio,
    make_config,
    plot_cdf,
)
from shared.clients import MONGO_DOCUMENT_OPTIONS
from tests.support.fleet import Fleet
from tests.support.sentinel_fleet import running_sentinel_fleet
from tests.support.sentinel_group import SentinelGroup

NAME = "redis_failover"
NAMESPACE = "benchredisha"
DOWN_AFTER_MS = 1000
SLACK_NS = 1e9
PROBE = "redis-failover-probe"
REPLICAS = ("r-1", "r-2", "r-3")
ENV = {"SCC_LOG_LEVEL": "info"}


async def _served_everywhere(client: httpx.AsyncClient, f: Fleet, version: int) -> bool:
    for name in REPLICAS:
        try:
            response = await client.get(f"{f.replicas[name].url}/configs/{PROBE}")
        except httpx.HTTPError:
            return False
        if response.status_code != 200 or response.json().get("version") != version:
            return False
    return True


async def _trial(
    group: SentinelGroup, f: Fleet, coll: Any, client: httpx.AsyncClient, version: int
) -> tuple[float, float]:
    """One kill: (ns until every replica serves ``version``, ns until Sentinel promoted)."""
    old = group.primary
    killed = time.perf_counter_ns()
    old.kill()
    await coll.update_one({KEY_FIELD: PROBE}, {"$set": {"version": version}})
    promoted = asyncio.create_task(asyncio.to_thread(_promoted_at, group, old.port))
    served: int | None = None
    deadline = time.monotonic() + 60
    while served is None:
        if await _served_everywhere(client, f, version):
            served = time.perf_counter_ns()
        elif time.monotonic() > deadline:
            raise TimeoutError(f"probe v{version} not served by every replica within 60 s")
        else:
            await asyncio.sleep(0.005)
    promoted_ns = float(await promoted - killed)
    await asyncio.to_thread(old.start)
    await asyncio.to_thread(group.wait_settled, 60)
    return float(served - killed), promoted_ns


def _promoted_at(group: SentinelGroup, old_port: int) -> int:
    """``perf_counter_ns`` when a sentinel first names a primary other than ``old_port``."""
    group.wait_new_primary(old_port, 60)  # polls every 10 ms
    return time.perf_counter_ns()


async def run(ctx: Context) -> Outcome:
    """10 primary kills (quick: 1, full: 20)."""
    trials = ctx.pick(quick=1, default=10, full=20)
    ours_ns: list[float] = []
    sentinel_ns: list[float] = []
    with running_sentinel_fleet(
        down_after_ms=DOWN_AFTER_MS, namespace=NAMESPACE, extra_env=ENV, workdir=ctx.logs(NAME)
    ) as ha:
        f, group = ha.fleet, ha.group
        await ours.seed(f.mongo_uri, [make_config(i) for i in range(20)])
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            f.mongo_uri, **MONGO_DOCUMENT_OPTIONS
        )
        coll = mongo[ours.DATABASE][ours.COLLECTION]
        await coll.update_one({KEY_FIELD: PROBE}, {"$set": {"version": 0}}, upsert=True)
        try:
            for name in ("w-a", "w-b"):
                await asyncio.to_thread(f.start_watcher, name)
            for name in REPLICAS:
                await asyncio.to_thread(f.start_replica, name)
            async with httpx.AsyncClient(timeout=1.0) as client:
                while not await _served_everywhere(client, f, 0):  # noqa: ASYNC110 -- HTTP poll
                    await asyncio.sleep(0.05)
                for trial in range(trials):
                    served, promoted = await _trial(group, f, coll, client, trial + 1)
                    ours_ns.append(served)
                    sentinel_ns.append(promoted)
                    ctx.log(
                        f"   kill {trial + 1}: sentinel promoted after {promoted / 1e6:.0f} ms, "
                        f"every replica served the change after {served / 1e6:.0f} ms"
                    )
        finally:
            await mongo.close()
    return _outcome(ctx, ours_ns, sentinel_ns)


def _outcome(ctx: Context, ours_ns: list[float], sentinel_ns: list[float]) -> Outcome:
    png = plot_cdf(
        ctx.out_dir / "redis_failover.png",
        title="Redis failover: SIGKILL of the primary",
        xlabel="seconds",
        series={
            "sentinel promotion": [x / 1e9 for x in sentinel_ns],
            "served by every replica": [x / 1e9 for x in ours_ns],
        },
        logx=False,
    )
    mine, theirs = describe(ours_ns), describe(sentinel_ns)
    n = len(ours_ns)
    rows = [
        Row(
            f"9 redis failover p99 vs sentinel promotion (n={n})",
            fmt_ns(mine["p99"]),
            fmt_ns(theirs["p99"]) + " (sentinel)",
            fmt_ratio(mine["p99"] / theirs["p99"]),
            "<= sentinel + 1 s",
            mine["p99"] <= theirs["p99"] + SLACK_NS,
        ),
        Row(
            "9 redis failover median vs sentinel promotion",
            fmt_ns(mine["median"]),
            fmt_ns(theirs["median"]) + " (sentinel)",
            fmt_ratio(mine["median"] / theirs["median"]),
            "(context)",
            None,
        ),
    ]
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "down_after_ms": DOWN_AFTER_MS,
        "served_by_every_replica_ns": mine,
        "sentinel_promotion_ns": theirs,
        "samples_ns": as_jsonable({"ours": ours_ns, "sentinel": sentinel_ns}),
    }
    return Outcome(NAME, rows, data, [png])
