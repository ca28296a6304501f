"""Server behaviour PyMongo's own suite found missing in the double, pinned on both targets."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import OperationFailure, WriteError
from pymongo.read_concern import ReadConcern

from tests.contract.streams import AWAIT_MS, drain
from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


def nested(levels: int) -> dict[str, Any]:
    """A document ``levels`` deep, the top document counting as level one."""
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


async def test_project_after_change_stream_shapes_events(mongo_target: MongoTarget) -> None:
    """$project after $changeStream keeps _id, includes, renames paths and adds literals."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        pipeline = [{"$project": {"op": "$operationType", "ns.coll": 1, "tag": "x"}}]
        async with await coll.watch(pipeline, max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_one({"_id": 1})
            (event,) = await drain(stream, 1)
        assert set(event) == {"_id", "op", "ns", "tag"}
        assert event["op"] == "insert"
        assert event["ns"] == {"coll": mongo_target.collection}
        assert event["tag"] == "x"
    finally:
        await client.close()


async def test_projecting_out_the_resume_token_fails_with_280(mongo_target: MongoTarget) -> None:
    """An event whose _id a stage removed fails the stream: 280, NonResumableChangeStreamError."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch([{"$project": {"_id": 0}}], max_await_time_ms=AWAIT_MS) as s:
            await coll.insert_one({"_id": 1})
            with pytest.raises(OperationFailure) as failed:
                await drain(s, 1)
        assert failed.value.code == 280
        assert failed.value.has_error_label("NonResumableChangeStreamError")
    finally:
        await client.close()


async def test_unknown_stage_and_local_read_concern_are_refused(mongo_target: MongoTarget) -> None:
    """An unknown stage gets 40324; watch with readConcern local is refused by the server."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        with pytest.raises(OperationFailure) as unknown:
            await coll.watch([{"$unsupported": "foo"}])
        assert unknown.value.code == 40324
        local = coll.with_options(read_concern=ReadConcern("local"))
        with pytest.raises(OperationFailure):
            await local.watch()
        async with await coll.with_options(read_concern=ReadConcern("majority")).watch():
            pass
    finally:
        await client.close()


async def test_rename_gives_rename_with_to_then_invalidate(mongo_target: MongoTarget) -> None:
    """renameCollection: a stream on the old name sees rename (with ``to``), then invalidate."""
    client = mongo_target.client()
    try:
        db = client[mongo_target.db]
        coll = db[mongo_target.collection]
        target = mongo_target.collection + "_other"
        await coll.insert_one({"_id": 1})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.rename(target)
            events = await drain(stream, 2)
        assert [e["operationType"] for e in events] == ["rename", "invalidate"]
        assert events[0]["to"] == {"db": mongo_target.db, "coll": target}
        assert await db[target].find_one({}) == {"_id": 1}
        assert mongo_target.collection not in await db.list_collection_names()
    finally:
        await client.close()


async def test_pipeline_update_reports_truncated_arrays(mongo_target: MongoTarget) -> None:
    """A pipeline $set that shortens an array is one update with truncatedArrays, no fields."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "array": ["foo", {"a": "bar"}, 1, 2, 3]})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.update_one({"_id": 1}, [{"$set": {"array": ["foo", {"a": "bar"}]}}])
            await coll.update_one({"_id": 1}, [{"$set": {"copy": "$array", "n": 2}}])
            first, second = await drain(stream, 2)
        assert first["updateDescription"]["updatedFields"] == {}
        assert first["updateDescription"]["truncatedArrays"] == [{"field": "array", "newSize": 2}]
        assert second["updateDescription"]["updatedFields"] == {
            "copy": ["foo", {"a": "bar"}],
            "n": 2,
        }
    finally:
        await client.close()


async def test_documents_deeper_than_100_levels_are_refused(mongo_target: MongoTarget) -> None:
    """Inserting or updating to 101 levels of nesting fails with 15 Overflow; 100 is stored."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, **nested(100)})  # 100 levels with the top document
        with pytest.raises(WriteError) as inserting:
            await coll.insert_one({"_id": 2, **nested(101)})
        assert inserting.value.code == 15
        with pytest.raises(WriteError) as updating:
            await coll.update_one({"_id": 1}, {"$set": {"deep": nested(100)}})
        assert updating.value.code == 15
        assert await coll.count_documents({}) == 1
    finally:
        await client.close()


async def test_ddl_events_only_on_expanded_streams(mongo_target: MongoTarget) -> None:
    """create/createIndexes show only with showExpandedEvents; a plain stream skips them."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with (
            await coll.watch(max_await_time_ms=AWAIT_MS) as plain,
            await coll.watch(max_await_time_ms=AWAIT_MS, show_expanded_events=True) as expanded,
        ):
            await coll.insert_one({"_id": 1})  # creates the collection
            await coll.create_index("x", name="x_1")
            await coll.insert_one({"_id": 2})
            seen = await drain(expanded, 4)
            assert [e["operationType"] for e in await drain(plain, 2)] == ["insert", "insert"]
        assert [e["operationType"] for e in seen] == ["create", "insert", "createIndexes", "insert"]
        assert seen[2]["operationDescription"]["indexes"][0]["name"] == "x_1"
        assert all("collectionUUID" in e for e in seen)
    finally:
        await client.close()


async def test_disambiguated_paths_on_expanded_streams(mongo_target: MongoTarget) -> None:
    """An index-like field name is disambiguated (array indices as ints) when expanded."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "a": [{"1": 1}]})
        async with await coll.watch(max_await_time_ms=AWAIT_MS, show_expanded_events=True) as s:
            await coll.update_one({"_id": 1}, {"$set": {"a.0.1": 2}})
            (event,) = await drain(s, 1)
        assert event["updateDescription"]["updatedFields"] == {"a.0.1": 2}
        assert event["updateDescription"]["disambiguatedPaths"] == {"a.0.1": ["a", 0, "1"]}
    finally:
        await client.close()


async def test_pre_and_post_images_once_enabled(mongo_target: MongoTarget) -> None:
    """With changeStreamPreAndPostImages, events carry the images; without, required fails."""
    client = mongo_target.client()
    try:
        db = client[mongo_target.db]
        coll = await db.create_collection(mongo_target.collection)
        await coll.insert_one({"_id": 1, "v": 1})
        options: dict[str, Any] = {
            "full_document": "required",
            "full_document_before_change": "required",
        }
        async with await coll.watch(max_await_time_ms=AWAIT_MS, **options) as stream:
            await coll.update_one({"_id": 1}, {"$set": {"v": 2}})
            with pytest.raises(OperationFailure):
                await drain(stream, 1)  # images were off when the update happened
        await db.command(
            {"collMod": mongo_target.collection, "changeStreamPreAndPostImages": {"enabled": True}}
        )
        async with await coll.watch(max_await_time_ms=AWAIT_MS, **options) as stream:
            await coll.update_one({"_id": 1}, {"$set": {"v": 3}})
            await coll.delete_one({"_id": 1})
            update, delete = await drain(stream, 2)
        assert update["fullDocumentBeforeChange"] == {"_id": 1, "v": 2}
        assert update["fullDocument"] == {"_id": 1, "v": 3}
        assert delete["fullDocumentBeforeChange"] == {"_id": 1, "v": 3}
    finally:
        await client.close()
