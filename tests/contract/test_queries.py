"""Reads and writes the service relies on: find paging, filters, write results, errors."""

from __future__ import annotations

import pytest
from bson.int64 import Int64
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, CursorNotFound, DuplicateKeyError, OperationFailure

from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


async def test_find_pages_through_get_more(mongo_target: MongoTarget) -> None:
    """find with a small batchSize returns every document exactly once across getMores."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_many([{"_id": i, "source_id": f"s{i}"} for i in range(250)])
        docs = await coll.find({}, batch_size=20).to_list()
        assert sorted(d["_id"] for d in docs) == list(range(250))
        everything = await coll.find({}).to_list()  # default batches: 101 first, then getMore
        assert len(everything) == 250
    finally:
        await client.close()


async def test_find_filters_sort_skip_limit(mongo_target: MongoTarget) -> None:
    """Equality on top-level and dotted fields, $in, ranges, sort, skip and limit behave."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_many(
            [
                {
                    "_id": i,
                    "kind": "even" if i % 2 == 0 else "odd",
                    "meta": {"n": i},
                    "tags": [f"t{i % 3}"],
                }
                for i in range(10)
            ]
        )
        assert len(await coll.find({"kind": "even"}).to_list()) == 5
        assert (await coll.find_one({"meta.n": 7}) or {})["_id"] == 7
        assert sorted(
            d["_id"] for d in await coll.find({"_id": {"$in": [1, 3, 99]}}).to_list()
        ) == [1, 3]
        assert len(await coll.find({"tags": "t0"}).to_list()) == 4
        page = (
            await coll.find({"meta.n": {"$gte": 2}})
            .sort("_id", DESCENDING)
            .skip(1)
            .limit(3)
            .to_list()
        )
        assert [d["_id"] for d in page] == [8, 7, 6]
        first = (
            await coll.find({}).sort([("kind", ASCENDING), ("_id", DESCENDING)]).limit(1).to_list()
        )
        assert first[0]["_id"] == 8
        assert await coll.count_documents({"kind": "odd"}) == 5
        assert await coll.count_documents({"missing": None}) == 10
        assert await coll.find_one({"_id": "absent"}) is None
    finally:
        await client.close()


async def test_numbers_compare_across_types(mongo_target: MongoTarget) -> None:
    """An int, a long and a double with the same value are equal in queries; a bool is not."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_many(
            [
                {"_id": 1, "v": 1},
                {"_id": 2, "v": Int64(1)},
                {"_id": 3, "v": 1.0},
                {"_id": 4, "v": True},
            ]
        )
        assert sorted(d["_id"] for d in await coll.find({"v": 1}).to_list()) == [1, 2, 3]
        assert [d["_id"] for d in await coll.find({"v": True}).to_list()] == [4]
    finally:
        await client.close()


async def test_write_results_match_the_server(mongo_target: MongoTarget) -> None:
    """update/replace/delete report matched, modified, upserted and deleted counts."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_many([{"_id": i, "group": "a"} for i in range(3)])
        many = await coll.update_many({"group": "a"}, {"$set": {"seen": True}})
        assert (many.matched_count, many.modified_count, many.upserted_id) == (3, 3, None)
        upsert = await coll.update_one({"source_id": "new"}, {"$set": {"v": 1}}, upsert=True)
        assert (upsert.matched_count, upsert.modified_count) == (0, 0)
        assert upsert.upserted_id is not None
        created = await coll.find_one({"_id": upsert.upserted_id})
        assert created == {"_id": upsert.upserted_id, "source_id": "new", "v": 1}
        replaced = await coll.replace_one({"_id": "r"}, {"x": 1}, upsert=True)
        assert replaced.upserted_id == "r"
        assert await coll.find_one({"_id": "r"}) == {"_id": "r", "x": 1}
        assert (await coll.delete_one({"group": "a"})).deleted_count == 1
        assert (await coll.delete_many({"group": "a"})).deleted_count == 2
        assert (await coll.delete_many({"group": "a"})).deleted_count == 0
    finally:
        await client.close()


async def test_duplicate_id_is_error_11000(mongo_target: MongoTarget) -> None:
    """Inserting an existing _id fails with 11000, per statement in an unordered bulk."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": "dup"})
        with pytest.raises(DuplicateKeyError) as single:
            await coll.insert_one({"_id": "dup"})
        assert single.value.code == 11000
        with pytest.raises(BulkWriteError) as bulk:
            await coll.insert_many([{"_id": "a"}, {"_id": "dup"}, {"_id": "b"}], ordered=False)
        details = bulk.value.details
        assert details["nInserted"] == 2
        assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 11000)]
    finally:
        await client.close()


async def test_unique_index_is_enforced(mongo_target: MongoTarget) -> None:
    """A unique index on source_id rejects a second document with the same value."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        name = await coll.create_index("source_id", unique=True)
        assert name == "source_id_1"
        await coll.insert_one({"source_id": "s1"})
        with pytest.raises(DuplicateKeyError):
            await coll.insert_one({"source_id": "s1"})
        indexes = {ix["name"]: ix for ix in await (await coll.list_indexes()).to_list()}
        assert set(indexes) == {"_id_", "source_id_1"}
        assert indexes["source_id_1"]["unique"] is True
    finally:
        await client.close()


async def test_unknown_command_and_cursor_errors(mongo_target: MongoTarget) -> None:
    """Unknown commands fail with 59 and getMore on an unknown cursor with 43."""
    client = mongo_target.client()
    try:
        db = client[mongo_target.db]
        with pytest.raises(OperationFailure) as unknown:
            await db.command("thisCommandDoesNotExist")
        assert unknown.value.code == 59
        assert unknown.value.details is not None
        assert unknown.value.details["codeName"] == "CommandNotFound"
        with pytest.raises(CursorNotFound) as missing:
            await db.command({"getMore": Int64(123456789), "collection": mongo_target.collection})
        assert missing.value.code == 43
    finally:
        await client.close()


async def test_server_identifies_as_a_replica_set_primary(mongo_target: MongoTarget) -> None:
    """hello reports a writable primary of a replica set with sessions and wire version 21."""
    client = mongo_target.client()
    try:
        hello = await client.admin.command("hello")
        assert hello["isWritablePrimary"] is True
        assert isinstance(hello["setName"], str)
        assert hello["maxWireVersion"] >= 21
        assert hello["logicalSessionTimeoutMinutes"] == 30
        assert "operationTime" in hello and "$clusterTime" in hello
        info = await client.admin.command("buildInfo")
        assert info["version"].startswith("7.")
    finally:
        await client.close()
