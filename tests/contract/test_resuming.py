"""Resuming change streams: resumeAfter, startAtOperationTime and postBatchResumeToken."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from tests.contract.streams import AWAIT_MS, drain, keys
from tests.support.mongo_fixtures import MongoTarget

pytestmark = pytest.mark.integration


async def test_resume_after_returns_exactly_the_following_events(mongo_target: MongoTarget) -> None:
    """resumeAfter an event's token yields every later event once, and nothing earlier."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            for i in range(5):
                await coll.insert_one({"_id": i})
            events = await drain(stream, 5)
        assert keys(events) == [0, 1, 2, 3, 4]
        async with await coll.watch(
            resume_after=events[1]["_id"], max_await_time_ms=AWAIT_MS
        ) as resumed:
            assert keys(await drain(resumed, 3)) == [2, 3, 4]
            assert await resumed.try_next() is None
    finally:
        await client.close()


async def test_start_at_operation_time_includes_that_write(mongo_target: MongoTarget) -> None:
    """startAtOperationTime of a write's operationTime replays that write and everything after."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": "before"})
        async with client.start_session() as session:
            await coll.insert_one({"_id": "at"}, session=session)
            start = session.operation_time
        await coll.insert_one({"_id": "after"})
        assert start is not None
        async with await coll.watch(
            start_at_operation_time=start, max_await_time_ms=AWAIT_MS
        ) as stream:
            assert keys(await drain(stream, 2)) == ["at", "after"]
    finally:
        await client.close()


async def test_post_batch_resume_token_advances_on_empty_batches(mongo_target: MongoTarget) -> None:
    """An idle stream's resume token (postBatchResumeToken) moves past unrelated writes."""
    client = mongo_target.client()
    try:
        db = client[mongo_target.db]
        coll, other = db[mongo_target.collection], db[mongo_target.collection + "_other"]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            assert await stream.try_next() is None
            before = stream.resume_token
            assert before is not None and isinstance(before["_data"], str)
            await other.insert_one({"unrelated": True})
            after: Mapping[str, Any] | None = before
            for _ in range(20):
                assert await stream.try_next() is None
                after = stream.resume_token
                assert after is not None
                if after["_data"] > before["_data"]:
                    break
            assert after is not None and after["_data"] > before["_data"]
    finally:
        await client.close()


async def test_resume_from_idle_token_misses_and_repeats_nothing(mongo_target: MongoTarget) -> None:
    """Resuming from a token saved while idle replays exactly the writes made since."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_one({"_id": "seen"})
            assert keys(await drain(stream, 1)) == ["seen"]
            assert await stream.try_next() is None
            saved = stream.resume_token
        await coll.insert_one({"_id": "missed-1"})
        await coll.insert_one({"_id": "missed-2"})
        async with await coll.watch(resume_after=saved, max_await_time_ms=AWAIT_MS) as resumed:
            assert keys(await drain(resumed, 2)) == ["missed-1", "missed-2"]
            assert await resumed.try_next() is None
    finally:
        await client.close()


async def test_resume_token_follows_try_next(mongo_target: MongoTarget) -> None:
    """stream.resume_token is the returned event's token mid-batch, and resumes right after it."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            await coll.insert_many([{"_id": i} for i in range(3)])
            first = (await drain(stream, 1))[0]
            assert stream.resume_token == first["_id"]
            token_after_first = stream.resume_token
            rest = await drain(stream, 2)
            assert keys(rest) == [1, 2]
            assert stream.resume_token is not None
            assert stream.resume_token["_data"] >= rest[-1]["_id"]["_data"]
        async with await coll.watch(
            resume_after=token_after_first, max_await_time_ms=AWAIT_MS
        ) as resumed:
            assert keys(await drain(resumed, 2)) == [1, 2]
    finally:
        await client.close()


async def test_initial_aggregate_reports_a_resume_token(mongo_target: MongoTarget) -> None:
    """A freshly opened stream already has a resume token that resumes at 'now'."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        await coll.insert_one({"_id": "old"})
        async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
            token = stream.resume_token
        assert token is not None
        await coll.insert_one({"_id": "new"})
        async with await coll.watch(resume_after=token, max_await_time_ms=AWAIT_MS) as resumed:
            assert keys(await drain(resumed, 1)) == ["new"]
    finally:
        await client.close()


async def test_malformed_resume_token_is_refused(mongo_target: MongoTarget) -> None:
    """A resume token that does not parse is an OperationFailure, and the server keeps serving."""
    client = mongo_target.client()
    try:
        coll = client[mongo_target.db][mongo_target.collection]
        with pytest.raises(OperationFailure):
            await coll.watch(resume_after={"_data": "not a hex token"})
        with pytest.raises(OperationFailure):
            await coll.watch(resume_after={"nope": 1})
        assert (await client.admin.command("ping"))["ok"] == 1.0
    finally:
        await client.close()
