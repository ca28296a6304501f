"""Dropping a watched collection: drop + invalidate, the end of the stream, and startAfter."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import OperationFailure

from tests.contract.streams import AWAIT_MS, drain
from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


async def invalidate_by_drop(target: MongoTarget) -> tuple[list[dict[str, Any]], Any, bool]:
    """Watch the collection, drop it; return the events, the final resume token, alive."""
    client = target.client()
    try:
        coll = client[target.db][target.collection]
        await coll.insert_one({"_id": 1})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.drop()
            events = await drain(stream, 2)
            after = await stream.try_next()
            assert after is None
            return events, stream.resume_token, stream.alive
    finally:
        await client.close()


async def test_drop_emits_drop_then_invalidate_and_ends_stream(mongo_target: MongoTarget) -> None:
    """Dropping the watched collection yields drop then invalidate, then the stream is dead."""
    events, token, alive = await invalidate_by_drop(mongo_target)
    assert [e["operationType"] for e in events] == ["drop", "invalidate"]
    drop, invalidate = events
    assert drop["ns"] == {"db": mongo_target.db, "coll": mongo_target.collection}
    assert "ns" not in invalidate and "documentKey" not in invalidate
    assert invalidate["clusterTime"] == drop["clusterTime"]
    assert invalidate["_id"]["_data"] > drop["_id"]["_data"]
    assert alive is False
    assert token == invalidate["_id"]


async def test_resume_after_invalidate_is_refused(mongo_target: MongoTarget) -> None:
    """resumeAfter an invalidate token fails with 260 InvalidResumeToken."""
    events, token, _ = await invalidate_by_drop(mongo_target)
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        with pytest.raises(OperationFailure) as failure:
            await coll.watch(resume_after=token)
        assert failure.value.code == 260
    finally:
        await client.close()


async def test_start_after_invalidate_starts_a_new_stream(mongo_target: MongoTarget) -> None:
    """startAfter an invalidate token opens a stream that sees the recreated collection."""
    _, token, _ = await invalidate_by_drop(mongo_target)
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(start_after=token, max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_one({"_id": "reborn"})
            events = await drain(stream, 1)
        assert [(e["operationType"], e["documentKey"]) for e in events] == [
            ("insert", {"_id": "reborn"})
        ]
    finally:
        await client.close()


async def test_drop_database_invalidates_a_collection_stream(mongo_target: MongoTarget) -> None:
    """Dropping the database ends a collection stream with drop + invalidate as well."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": 1})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await client.drop_database(mongo_target.db)
            events = await drain(stream, 2)
            assert not stream.alive
        assert [e["operationType"] for e in events] == ["drop", "invalidate"]
    finally:
        await client.close()
