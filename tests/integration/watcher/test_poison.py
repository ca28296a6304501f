"""Real watcher + real replica on a real Redis and the MongoDB double, through real PyMongo.

The documents here are legal BSON that production will hold: dates beyond year 9999 or
before year 1 (written from JavaScript or Java), a binary of subtype 4 that is not a
16-byte UUID (which PyMongo refuses to decode under ``uuidRepresentation=standard``), and
an int64 ``_id`` (a reload decodes it as ``Int64``, a message as ``int``). The watcher
keeps following, and the replica -- warmed by a reload, fed by messages -- converges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from bson import Int64
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from pymongo import AsyncMongoClient

from service.errors import StoreError
from service.event_sinks import IngestCounters
from service.replica import Replica, run_replica
from service.storing import MongoConfigStore
from shared.clients import make_mongo
from tests.integration.watcher.rig import (
    COLLECTION,
    DB,
    collecting,
    eventually,
    run_watcher,
    settings_for,
)
from tests.support.mongo_double import MongoDouble
from watcher.mongo_source import MongoChangeSource

pytestmark = pytest.mark.integration

YEAR_10000 = DatetimeMS(253_402_300_800_000)
YEAR_0 = DatetimeMS(-62_198_755_200_000)
#: Legal BSON that PyMongo cannot decode with uuidRepresentation=standard.
BAD_UUID = Binary(b"abc", 4)


@asynccontextmanager
async def replica(redis_url: str, double: MongoDouble, name: str) -> AsyncIterator[Replica]:
    """A replica in this event loop on the watcher's namespace, returned once it is warm."""
    settings = settings_for(redis_url, double.uri, name, resync_jitter_ms=0)
    async with run_replica(settings, events=IngestCounters()) as running:
        await eventually(lambda: running.cache.warmed and running.readiness()[0], within=15)
        yield running


def cached(r: Replica, key: str) -> dict[str, Any] | None:
    """What the replica holds for ``key`` (no read-through)."""
    return r.cache.snapshot.by_key.get(key)


@pytest.fixture
async def coll(mongo_double: MongoDouble) -> AsyncIterator[Any]:
    """A plain client's handle on the collection, writing as an application would."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_double.uri)
    try:
        yield client[DB][COLLECTION]
    finally:
        await client.close()


async def test_dates_outside_year_1_to_9999_are_carried_not_fatal(
    redis_url: str, mongo_double: MongoDouble, coll: Any
) -> None:
    """A reload and a message both deliver year-10000 and year-0 dates as DatetimeMS."""
    await coll.insert_one({"_id": 1, "source_id": "old", "expires": YEAR_10000})
    async with (
        run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        replica(redis_url, mongo_double, "r1") as r,
    ):
        assert cached(r, "old") == {"_id": 1, "source_id": "old", "expires": YEAR_10000}
        await eventually(lambda: run.watcher.stats.stream_open)
        await coll.insert_one({"_id": 2, "source_id": "new", "born": YEAR_0, "dies": YEAR_10000})
        await coll.update_one({"_id": 1}, {"$set": {"v": 2}})
        await eventually(lambda: (cached(r, "old") or {}).get("v") == 2 and cached(r, "new"))
        expected = {"_id": 2, "source_id": "new", "born": YEAR_0, "dies": YEAR_10000}
        assert cached(r, "new") == expected
        assert not run.task.done() and run.watcher.stats.stream_open
        assert sum(run.watcher.stats.poison.values()) == 0


async def test_an_undecodable_document_is_poison_the_fleet_survives(
    redis_url: str, mongo_double: MongoDouble, coll: Any
) -> None:
    """The watcher publishes it as gone and goes on; replicas drop it and still warm up."""
    await coll.insert_one({"_id": 1, "source_id": "p", "v": 1})
    async with (
        collecting(redis_url) as seen,
        run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        replica(redis_url, mongo_double, "r1") as r,
    ):
        assert cached(r, "p") is not None
        await eventually(lambda: run.watcher.stats.stream_open)
        await coll.update_one({"_id": 1}, {"$set": {"blob": BAD_UUID}})
        await coll.insert_one({"_id": 2, "source_id": "after"})
        await eventually(lambda: cached(r, "after") is not None)
        assert cached(r, "p") is None  # the pre-poison version is no longer served
        assert not run.task.done() and run.watcher.stats.poison["undecodable"] == 1
        poison = [m for m in seen.changes() if m.kind == "delete"]
        assert [(m.key, m.doc_id, m.op) for m in poison] == [("p", 1, "update")]
        async with replica(redis_url, mongo_double, "r2") as fresh:  # warm-up with it stored
            assert cached(fresh, "after") is not None and cached(fresh, "p") is None
            store = fresh.subscriber._store
            assert isinstance(store, MongoConfigStore) and store.undecodable == 1


async def test_an_int64_id_loaded_by_a_reload_is_deleted_by_a_message(
    redis_url: str, mongo_double: MongoDouble, coll: Any
) -> None:
    """The reload holds Int64(2**40), the delete message names int 2**40: the entry goes."""
    await coll.insert_one({"_id": Int64(2**40), "source_id": "big"})
    await coll.insert_one({"_id": 2.0**41, "source_id": "dbl"})
    async with (
        run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        replica(redis_url, mongo_double, "r1") as r,
    ):
        held = cached(r, "big")
        assert held is not None and type(held["_id"]) is Int64
        await eventually(lambda: run.watcher.stats.stream_open)
        await coll.delete_one({"_id": 2**40})
        await coll.delete_one({"_id": 2**41})  # stored as a double, named as an int
        await coll.insert_one({"_id": 3, "source_id": "marker"})
        await eventually(lambda: cached(r, "marker") is not None)
        assert cached(r, "big") is None
        assert cached(r, "dbl") is None


async def test_a_poison_document_stored_before_start_is_skipped_by_the_key_scan(
    redis_url: str, mongo_double: MongoDouble, coll: Any
) -> None:
    """A stored document whose _id does not decode is skipped by the key scan; the watcher leads."""
    await coll.insert_one({"_id": BAD_UUID, "source_id": "p"})
    async with (
        collecting(redis_url) as seen,
        run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
    ):
        await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
        await coll.insert_one({"_id": 2, "source_id": "ok"})
        await eventually(lambda: "ok" in seen.keys())
        assert not run.task.done()
        source = run.watcher.follower._source
        assert isinstance(source, MongoChangeSource) and source.undecodable_scanned == 1


async def test_container_reads_leave_the_poison_document_out(
    mongo_double: MongoDouble, coll: Any
) -> None:
    """find_by_container answers with the documents that decode; reading the poison by key fails."""
    await coll.insert_many(
        [
            {"_id": n, "source_id": f"s{n}", "ingestion": {"landing_container": "c"}}
            for n in range(3)
        ]
    )
    await coll.update_one({"_id": 1}, {"$set": {"blob": BAD_UUID}})
    settings = settings_for("redis://127.0.0.1:1", mongo_double.uri, "r")
    client = make_mongo(settings.mongo, appname="test-poison")
    try:
        store = MongoConfigStore(client, settings=settings.mongo)
        found = await store.find_by_container("c")
        assert sorted(d["source_id"] for d in found) == ["s0", "s2"]
        assert store.undecodable == 1
        with pytest.raises(StoreError, match="uuid"):
            await store.find_by_key("s1")
    finally:
        await client.close()
