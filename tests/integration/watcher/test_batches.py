"""Batched publishing end to end: real watcher, real Redis, the double, real replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from service.event_sinks import IngestCounters
from service.replica import Replica, run_replica
from shared.settings import load_settings
from tests.integration.watcher.rig import (
    COLLECTION,
    DB,
    NAMESPACE,
    collecting,
    eventually,
    run_watcher,
    settings_for,
)
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration


@asynccontextmanager
async def replicas(redis_url: str, mongo_uri: str, n: int) -> AsyncIterator[list[Replica]]:
    """``n`` service replicas (no HTTP) on the watcher's namespace, each warmed."""
    async with AsyncExitStack() as stack:
        out = []
        for i in range(n):
            settings = load_settings(
                mongo={"uri": mongo_uri, "database": DB, "collection": COLLECTION},
                redis={"url": redis_url, "namespace": NAMESPACE},
                # Silence is judged on 3 s, not 0.3 s: a burst on a loaded machine can stall
                # this one event loop (watcher, replicas, writer) for longer than that.
                timing={"heartbeat_interval_ms": 1000, "resync_jitter_ms": 0},
                process={"instance_id": f"replica-{i}", "log_format": "console"},
            )
            out.append(
                await stack.enter_async_context(run_replica(settings, events=IngestCounters()))
            )
        await eventually(lambda: all(r.cache.warmed for r in out), within=20)
        yield out


async def test_a_burst_arrives_as_fewer_messages_with_gap_free_seqs_and_exact_caches(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """2,000 inserts in a few insert_many calls: batches, seqs 1 apart, caches equal MongoDB."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    n = 2000
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1", ttl_ms=5000)) as run,
        ):
            await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
            async with replicas(redis_url, mongo_double.uri, 2) as fleet:
                for start in range(0, n, 500):
                    await coll.insert_many(
                        [
                            {"_id": i, "source_id": f"k{i}", "v": i}
                            for i in range(start, start + 500)
                        ]
                    )
                await coll.update_one({"_id": 7}, {"$set": {"v": -7}})
                await coll.delete_one({"_id": 8})
                await eventually(lambda: all(r.cache.size == n - 1 for r in fleet), within=60)
                await eventually(
                    lambda: all(r.cache.snapshot.by_key["k7"]["v"] == -7 for r in fleet)
                )
                expected = {d["source_id"]: d async for d in coll.find({})}
                for replica in fleet:
                    assert replica.cache.snapshot.by_key == expected
                    assert replica.subscriber.state.reloads == 0
                    assert not any(replica.subscriber.state.resyncs.values())
        changes = seen.changes()[1:]  # after the start-up resync
        assert len(changes) == n + 2
        seqs = [m.seq for m in changes]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert seen.received < len(changes) / 5  # batched: far fewer messages than changes
        assert run.watcher.stats.batches >= 1
        cts = [m.ct for m in changes]
        assert all(ct is not None for ct in cts) and cts == sorted(cts)  # each its own ct
    finally:
        await client.close()


async def test_a_single_change_on_a_quiet_stream_is_published_at_once_as_one_message(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """A lone insert goes out as a ``v: 1`` message within a generous bound of its write."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1", max_await_ms=2000)) as run,
        ):
            await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
            await asyncio.sleep(0.2)
            before = seen.received
            started = time.monotonic()
            await coll.insert_one({"_id": 1, "source_id": "lone"})
            await eventually(lambda: "lone" in seen.keys(), within=5)
            took = time.monotonic() - started
            # A stream that waited to fill a batch would sit in a 2 s getMore first.
            assert took < 1.5
            assert seen.received - before == 1
            assert run.watcher.stats.batches == 0
    finally:
        await client.close()
