"""Subscribing on a lagging Redis replica: the start-up protocol stays exact, lag shows as age.

A real primary and a real replica whose replication stream is held back by a proxy
(:mod:`tests.support.lagging_replica`); a stand-in leader publishes through the real fenced
script on the primary while the replica app (subscribed on the replica through
``SCC_REDIS_SUBSCRIBE_URL``, reading seq on the primary) starts and follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.integration.service.replica_rig import COLLECTION, DB, Rig, replica_rig, wait_for
from tests.support.lagging_replica import LaggingPair, lagging_pair
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

#: Replication lag the proxy adds (heartbeats go out every 250 ms in the rig).
LAG_S = 0.4


def cached(rig: Rig) -> dict[str, dict[str, Any]]:
    """The replica's serving map, without ``_id``."""
    return {
        k: {f: v for f, v in d.items() if f != "_id"}
        for k, d in rig.replica.cache.snapshot.by_key.items()
    }


def stored(double: MongoDouble) -> dict[str, dict[str, Any]]:
    """What MongoDB holds, keyed like the cache, without ``_id``."""
    return {
        d["source_id"]: {f: v for f, v in d.items() if f != "_id"}
        for d in double.documents(db=DB, collection=COLLECTION)
    }


async def write_and_publish(rig: Rig, stop: asyncio.Event, published: list[int]) -> None:
    """Like a watcher: write a change to MongoDB, then publish it (about 60 changes/s)."""
    for n in itertools.count():
        if stop.is_set():
            return
        doc = {"source_id": f"k{n % 40}", "rev": n}
        await rig.collection.replace_one({"source_id": doc["source_id"]}, doc, upsert=True)
        published.append(await rig.leader.upsert(doc))
        await asyncio.sleep(0.015)


async def numsub(url: str, channel: str) -> int:
    """Subscribers of ``channel`` on the server at ``url``."""
    client = aioredis.Redis.from_url(url)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def test_start_up_on_a_lagging_replica_ends_exact_without_a_reload(
    mongo_double: MongoDouble,
) -> None:
    """Start and follow on a replica 400 ms behind, paused at start: exact, no reload."""
    mongo_double.insert_documents(
        ({"source_id": f"k{i}", "rev": -1} for i in range(40)), db=DB, collection=COLLECTION
    )
    async with lagging_pair() as pair:
        pair.proxy.delay_s = LAG_S
        pair.replica.pause()  # the SUBSCRIBE waits while the writer runs: a tail in flight
        async with replica_rig(
            pair.primary_url,
            mongo_double,
            heartbeats=False,
            wait_ready=False,
            subscribe_url=pair.replica_url,
        ) as rig:
            stop, published = asyncio.Event(), []
            writer = asyncio.create_task(write_and_publish(rig, stop, published))
            try:
                async with rig.leader.beating():
                    await asyncio.sleep(0.3)
                    pair.replica.resume()
                    await rig.wait_ready(within_s=15)
                    await lag_burst(pair, rig)
                    stop.set()
                    await writer
                    await converge(rig, mongo_double, published[-1])
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await writer
            state = rig.replica.subscriber.state
            channel = rig.keys.invalidations
            assert await numsub(pair.replica_url, channel) == 1
            assert await numsub(pair.primary_url, channel) == 0
            assert sum(state.resyncs.values()) == 0, state.resyncs
            assert state.reloads == 0 and state.tail_covered > 0
            assert len(published) >= 10  # the writer ran through the start-up


async def lag_burst(pair: LaggingPair, rig: Rig) -> None:
    """Freeze the replica 600 ms mid-stream: heartbeats arrive late and count as age."""
    pair.replica.pause()
    await asyncio.sleep(0.6)
    pair.replica.resume()
    ages: list[float] = []

    def aged() -> bool:
        age = rig.replica.subscriber.state.behind_s
        if age is not None:
            ages.append(age)
        return bool(ages) and max(ages) >= LAG_S

    await wait_for(aged, within_s=5, what="a heartbeat whose age shows the replication lag")


async def converge(rig: Rig, double: MongoDouble, last_seq: int) -> None:
    """Until the replica holds the last published seq and equals MongoDB."""
    await wait_for(
        lambda: rig.replica.subscriber.state.last_seq == last_seq, within_s=10, what="last seq"
    )
    await wait_for(lambda: cached(rig) == stored(double), within_s=10, what="cache == MongoDB")
