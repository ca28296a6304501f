"""Benchmark 3: MongoDB commands issued per ordinary change, across N replicas.

The MongoDB double counts every command it serves, by name. For each design, with N
replicas warm and the counters reset, the bench makes ``changes`` ordinary updates, one
at a time; after each it waits until every replica has taken the change in, then looks
the changed key up once on every replica (a real request, as an ingestion event would
make). The counters then tell what the whole fleet asked MongoDB for.

* **ours**: one watcher process + N ``python -m service`` replicas; lookups are
  ``GET /configs/{id}`` on each replica.
* **per-replica design** (:mod:`bench.per_replica`): N replicas, each with its own
  client and change stream, each dropping its list on the change and re-reading the
  collection on the lookup that follows.

The double counts by command name only, so ``getMore`` mixes change-stream batches with
the further batches of a ``find``; the headline "collection reads" is therefore the
number of ``find`` commands (each one a query of the collection), and every other
command is listed per change next to it. The writer's own ``update`` and the drivers'
``hello``/``ping`` monitoring are not counted. Target: 0 reads per ordinary change for
ours.
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
    key_of,
    make_config,
    plot_lines,
    wait_until,
)
from bench.per_replica import PerReplicaCache, make_meter
from shared.clients import MONGO_DOCUMENT_OPTIONS
from tests.support.fleet import Child, Fleet

NAME = "mongo_reads"
#: Commands that are not about the data: monitoring, sessions, the bench's own writes.
NOT_COUNTED = frozenset(
    {"hello", "isMaster", "ismaster", "ping", "endSessions", "buildInfo", "update", "insert"}
)


def _per_change(counts: dict[str, int], changes: int) -> dict[str, float]:
    return {
        name: n / changes for name, n in sorted(counts.items()) if name not in NOT_COUNTED and n
    }


async def _change(client: AsyncMongoClient[Any], i: int, version: int) -> None:
    coll = client[ours.DATABASE][ours.COLLECTION]
    result = await coll.update_one({KEY_FIELD: key_of(i)}, {"$set": {"version": version}})
    if result.matched_count != 1:
        raise RuntimeError(f"update of {key_of(i)} matched {result.matched_count}")


async def _ours(f: Fleet, n: int, changes: int, client: AsyncMongoClient[Any]) -> dict[str, Any]:
    await asyncio.to_thread(f.start_watcher, "w-1")
    replicas: list[Child] = []
    for i in range(n):
        replicas.append(await asyncio.to_thread(f.start_replica, f"r-{i}", wait_ready=False))
    for child in replicas:
        await asyncio.to_thread(child.wait_http, "/health/ready", timeout=90.0)
    async with httpx.AsyncClient(timeout=10.0) as http:

        async def last_seqs() -> list[int]:
            bodies = await asyncio.gather(*(http.get(c.url + "/health/cache") for c in replicas))
            return [int(b.json().get("last_seq") or 0) for b in bodies]

        start_seq = min(await last_seqs())
        await ours.command_counts(client, reset=True)
        started = time.monotonic()
        for c in range(changes):
            await _change(client, c, 1_000 + c)
            deadline = time.monotonic() + 10
            while min(await last_seqs()) < start_seq + c + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replicas did not apply change {c} within 10 s")
                await asyncio.sleep(0.005)
            for child in replicas:
                response = await http.get(f"{child.url}/configs/{key_of(c)}")
                if response.status_code != 200 or response.json().get("version") != 1_000 + c:
                    raise RuntimeError(f"{child.name} answered {response.status_code}")
        elapsed = time.monotonic() - started
        counts = await ours.command_counts(client)
    for child in [*replicas, *f.watchers.values()]:
        await asyncio.to_thread(child.stop)
    f.replicas.clear()
    f.watchers.clear()
    return {"counts": counts, "seconds": elapsed}


async def _per_replica(
    f: Fleet, n: int, changes: int, client: AsyncMongoClient[Any]
) -> dict[str, Any]:
    meter, provider = make_meter()
    clients: list[AsyncMongoClient[dict[str, Any]]] = [
        AsyncMongoClient(f.mongo_uri, **MONGO_DOCUMENT_OPTIONS) for _ in range(n)
    ]
    caches = [PerReplicaCache(c[ours.DATABASE][ours.COLLECTION], meter=meter) for c in clients]
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in caches]
    try:
        async with asyncio.TaskGroup() as group:
            for i, cache in enumerate(caches):
                group.create_task(cache.follow(readies[i], stop), name=f"per-replica-{i}")
            for event in readies:
                await event.wait()
            for cache in caches:
                await cache.reload()
            await ours.command_counts(client, reset=True)
            started = time.monotonic()
            for c in range(changes):
                await _change(client, c, 2_000 + c)
                await wait_until(
                    lambda c=c: all(x.changes_seen >= c + 1 for x in caches),  # type: ignore[misc]
                    what=f"per-replica caches saw change {c}",
                    within_s=10,
                    interval_s=0.002,
                )
                for cache in caches:
                    doc = await cache.get(key_of(c))
                    if doc is None or doc.get("version") != 2_000 + c:
                        raise RuntimeError(f"per-replica lookup of change {c} answered {doc!r}")
            elapsed = time.monotonic() - started
            counts = await ours.command_counts(client)
            stop.set()
    finally:
        for each in clients:
            await each.close()
        provider.shutdown()
    return {
        "counts": counts,
        "seconds": elapsed,
        "reloads": sum(c.reloads for c in caches),
    }


async def run(ctx: Context) -> Outcome:
    """Count commands per change for both designs at each fleet size."""
    sizes = ctx.pick(quick=[2], default=[1, 5, 10])
    changes = ctx.pick(quick=5, default=30, full=100)
    docs = [make_config(i) for i in range(ctx.pick(quick=200, default=1_000))]
    results: list[dict[str, Any]] = []
    async with ours.fleet(docs, namespace="benchreads", workdir=ctx.logs(NAME)) as f:
        client: AsyncMongoClient[Any] = AsyncMongoClient(f.mongo_uri, **MONGO_DOCUMENT_OPTIONS)
        try:
            for n in sizes:
                ctx.log(f"   {n} replicas, {changes} changes: ours")
                mine = await _ours(f, n, changes, client)
                ctx.log(f"   {n} replicas, {changes} changes: per-replica design")
                theirs = await _per_replica(f, n, changes, client)
                finds = theirs["counts"].get("find", 0)
                results.append(
                    {
                        "replicas": n,
                        "changes": changes,
                        "ours": {
                            **mine,
                            "per_change": _per_change(mine["counts"], changes),
                            "reads_per_change": mine["counts"].get("find", 0) / changes,
                        },
                        "per_replica": {
                            **theirs,
                            "per_change": _per_change(theirs["counts"], changes),
                            "reads_per_change": finds / changes,
                        },
                    }
                )
        finally:
            await client.close()
    png = plot_lines(
        ctx.out_dir / "mongo_reads.png",
        title="MongoDB commands per change (whole fleet)",
        xlabel="replicas",
        ylabel="commands per change",
        series={
            "ours: find": (sizes, [r["ours"]["reads_per_change"] for r in results]),
            "ours: all commands": (
                sizes,
                [sum(r["ours"]["per_change"].values()) for r in results],
            ),
            "per-replica: find": (sizes, [r["per_replica"]["reads_per_change"] for r in results]),
            "per-replica: all commands": (
                sizes,
                [sum(r["per_replica"]["per_change"].values()) for r in results],
            ),
        },
    )
    rows: list[Row] = []
    for r in results:
        o, p = r["ours"], r["per_replica"]
        rows.append(
            Row(
                f"3 collection reads per change @{r['replicas']} replicas",
                f"{o['reads_per_change']:.2f}",
                f"{p['reads_per_change']:.2f}",
                "-",
                "0 (ours)",
                o["reads_per_change"] == 0,
            )
        )
    last = results[-1]
    rows.append(
        Row(
            f"3 all commands per change @{last['replicas']} replicas",
            f"{sum(last['ours']['per_change'].values()):.2f}",
            f"{sum(last['per_replica']['per_change'].values()):.2f}",
            "-",
            "(context)",
            None,
        )
    )
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "not_counted": sorted(NOT_COUNTED),
        "collection_size": len(docs),
        "sizes": as_jsonable(results),
    }
    return Outcome(NAME, rows, data, [png])
