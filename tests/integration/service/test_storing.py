"""MongoConfigStore through the real PyMongo driver against the MongoDB wire double."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.errors import StoreError
from service.storing import MongoConfigStore
from shared.clients import make_mongo
from shared.settings import MongoSettings, load_group
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

DB, COLLECTION = "ingestion", "source_configs"


@pytest.fixture
async def store(mongo_double: MongoDouble) -> AsyncIterator[MongoConfigStore]:
    """A MongoConfigStore on a real AsyncMongoClient connected to the double."""
    settings = load_group(
        MongoSettings, uri=mongo_double.uri, database=DB, collection=COLLECTION, timeout_ms=2000
    )
    client = make_mongo(settings, appname="test-storing")
    try:
        yield MongoConfigStore(client, settings=settings)
    finally:
        await client.close()


async def test_reads_by_collection_key_and_container(
    store: MongoConfigStore, mongo_double: MongoDouble
) -> None:
    """load_all, find_by_key and find_by_container return the stored documents."""
    mongo_double.insert_documents(
        [
            {"source_id": "a", "ingestion": {"landing_container": "c1"}},
            {"source_id": "b", "ingestion": {"landing_container": "c1"}},
            {"source_id": "c", "ingestion": {"landing_container": "c2"}},
        ],
        db=DB,
        collection=COLLECTION,
    )
    assert sorted(d["source_id"] for d in await store.load_all()) == ["a", "b", "c"]
    found = await store.find_by_key("b")
    assert found is not None and found["ingestion"] == {"landing_container": "c1"}
    assert await store.find_by_key("zz") is None
    assert sorted(d["source_id"] for d in await store.find_by_container("c1")) == ["a", "b"]
    assert await store.find_by_container("none") == []


async def test_a_refused_read_is_a_store_error(
    store: MongoConfigStore, mongo_double: MongoDouble
) -> None:
    """A server error on find surfaces as StoreError (chained), never as a PyMongo error."""
    mongo_double.fail_commands("find", code=2, times=3)
    with pytest.raises(StoreError) as caught:
        await store.find_by_key("a")
    assert caught.value.__cause__ is not None
    with pytest.raises(StoreError):
        await store.load_all()
    with pytest.raises(StoreError):
        await store.find_by_container("c")


async def test_read_time_is_a_majority_time_not_before_the_last_change(
    store: MongoConfigStore, mongo_double: MongoDouble
) -> None:
    """read_time() is the operationTime of a majority read: at or after a change just made."""
    client = make_mongo(
        load_group(MongoSettings, uri=mongo_double.uri, database=DB, collection=COLLECTION),
        appname="test-writer",
    )
    try:
        coll = client[DB][COLLECTION]
        async with await coll.watch() as stream:
            await coll.insert_one({"source_id": "t"})
            change = await stream.try_next()
            while change is None:
                change = await stream.try_next()
        written = change["clusterTime"]
        first = await store.read_time()
        assert first is not None and first >= (written.time, written.inc)
        second = await store.read_time()
        assert second is not None and second >= first
    finally:
        await client.close()
