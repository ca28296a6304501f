"""Change event shapes: what insert, update, replace and delete events carry."""

from __future__ import annotations

import datetime

import pytest
from bson.timestamp import Timestamp

from tests.contract.streams import AWAIT_MS, drain
from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


async def test_insert_event_shape(mongo_target: MongoTarget) -> None:
    """An insert event carries a resume token, cluster and wall time, ns, key and the document."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            doc = {"_id": "s1", "source_id": "s1", "nested": {"a": 1}}
            await coll.insert_one(doc)
            (event,) = await drain(stream, 1)
        assert event["operationType"] == "insert"
        assert isinstance(event["_id"]["_data"], str)
        assert isinstance(event["clusterTime"], Timestamp)
        assert isinstance(event["wallTime"], datetime.datetime)
        assert event["ns"] == {"db": mongo_target.db, "coll": mongo_target.collection}
        assert event["documentKey"] == {"_id": "s1"}
        assert event["fullDocument"] == doc
        assert "updateDescription" not in event
    finally:
        await client.close()


async def test_update_event_with_update_lookup(mongo_target: MongoTarget) -> None:
    """An update event describes set and removed fields and, with updateLookup, the new doc."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "a": 1, "b": 2, "sub": {"x": 1, "y": 1}})
        async with await coll.watch(
            full_document="updateLookup", max_await_time_ms=AWAIT_MS
        ) as stream:
            await coll.update_one({"_id": 1}, {"$set": {"a": 5, "sub.x": 7}, "$unset": {"b": ""}})
            (event,) = await drain(stream, 1)
        assert event["operationType"] == "update"
        assert event["documentKey"] == {"_id": 1}
        description = event["updateDescription"]
        assert description["updatedFields"] == {"a": 5, "sub.x": 7}
        assert description["removedFields"] == ["b"]
        assert event["fullDocument"] == {"_id": 1, "a": 5, "sub": {"x": 7, "y": 1}}
    finally:
        await client.close()


async def test_update_event_without_lookup_has_no_full_document(mongo_target: MongoTarget) -> None:
    """Without updateLookup an update event has no fullDocument field at all."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "a": 1})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.update_one({"_id": 1}, {"$inc": {"a": 1}})
            (event,) = await drain(stream, 1)
        assert event["operationType"] == "update"
        assert "fullDocument" not in event
        assert event["updateDescription"]["updatedFields"] == {"a": 2}
    finally:
        await client.close()


async def test_update_lookup_reads_current_state(mongo_target: MongoTarget) -> None:
    """updateLookup returns the document as it is when the event is read, not as of the event."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "v": 0})
        async with await coll.watch(
            full_document="updateLookup", max_await_time_ms=AWAIT_MS
        ) as stream:
            await coll.update_one({"_id": 1}, {"$set": {"v": 1}})
            await coll.update_one({"_id": 1}, {"$set": {"v": 2}})
            first, second = await drain(stream, 2)
        assert first["updateDescription"]["updatedFields"] == {"v": 1}
        assert first["fullDocument"] == {"_id": 1, "v": 2}
        assert second["fullDocument"] == {"_id": 1, "v": 2}
    finally:
        await client.close()


async def test_update_lookup_of_deleted_document_is_null(mongo_target: MongoTarget) -> None:
    """updateLookup of a document deleted before the event is read gives fullDocument null."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "v": 0})
        async with await coll.watch(
            full_document="updateLookup", max_await_time_ms=AWAIT_MS
        ) as stream:
            await coll.update_one({"_id": 1}, {"$set": {"v": 1}})
            await coll.delete_one({"_id": 1})
            update, delete = await drain(stream, 2)
        assert update["operationType"] == "update"
        assert "fullDocument" in update and update["fullDocument"] is None
        assert delete["operationType"] == "delete"
    finally:
        await client.close()


async def test_replace_event_carries_new_document(mongo_target: MongoTarget) -> None:
    """A replacement produces a replace event whose fullDocument is the replacement."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "old": True})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            result = await coll.replace_one({"_id": 1}, {"new": True})
            (event,) = await drain(stream, 1)
        assert (result.matched_count, result.modified_count) == (1, 1)
        assert event["operationType"] == "replace"
        assert event["fullDocument"] == {"_id": 1, "new": True}
        assert event["documentKey"] == {"_id": 1}
        assert "updateDescription" not in event
    finally:
        await client.close()


async def test_delete_event_shape(mongo_target: MongoTarget) -> None:
    """A delete event carries the document key and no fullDocument."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": "gone"})
        async with await coll.watch(
            full_document="updateLookup", max_await_time_ms=AWAIT_MS
        ) as stream:
            await coll.delete_one({"_id": "gone"})
            (event,) = await drain(stream, 1)
        assert event["operationType"] == "delete"
        assert event["documentKey"] == {"_id": "gone"}
        assert "fullDocument" not in event
    finally:
        await client.close()


async def test_noop_update_produces_no_event(mongo_target: MongoTarget) -> None:
    """An update that changes nothing reports nModified 0 and emits no change event."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1, "v": 1})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            result = await coll.update_one({"_id": 1}, {"$set": {"v": 1}})
            await coll.insert_one({"_id": 2})
            (event,) = await drain(stream, 1)
        assert (result.matched_count, result.modified_count) == (1, 0)
        assert event["operationType"] == "insert"
        assert event["documentKey"] == {"_id": 2}
    finally:
        await client.close()


async def test_match_stage_filters_operation_types(mongo_target: MongoTarget) -> None:
    """A $match on operationType after $changeStream only lets the chosen kinds through."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "delete"]}}}]
        async with await coll.watch(pipeline, max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_one({"_id": 1})
            await coll.update_one({"_id": 1}, {"$set": {"x": 1}})
            await coll.delete_one({"_id": 1})
            events = await drain(stream, 2)
        assert [e["operationType"] for e in events] == ["insert", "delete"]
    finally:
        await client.close()


async def test_events_follow_write_order_with_increasing_tokens(mongo_target: MongoTarget) -> None:
    """Events arrive in write order, with strictly increasing resume tokens and cluster times."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            for i in range(5):
                await coll.insert_one({"_id": i})
            events = await drain(stream, 5)
        assert [e["documentKey"]["_id"] for e in events] == list(range(5))
        tokens = [e["_id"]["_data"] for e in events]
        assert tokens == sorted(tokens) and len(set(tokens)) == 5
        times = [e["clusterTime"] for e in events]
        assert times == sorted(times) and len(set(times)) == 5
    finally:
        await client.close()
