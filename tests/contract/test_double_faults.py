"""The double's fault hooks, driven in process and over the wire (double only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import NotPrimaryError, OperationFailure

from tests.contract.streams import drain, keys
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

AWAIT_MS = 100
DB, COLL = "ingestion", "source_configs"


@pytest.fixture
async def client(mongo_double: MongoDouble) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """An async client on the double, closed after the test."""
    mongo_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_double.uri, serverSelectionTimeoutMS=5000
    )
    yield mongo_client
    await mongo_client.close()


async def test_hangup_mid_get_more_is_resumed_transparently(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Hanging up every connection during a waiting getMore loses and repeats no event."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=400) as stream:
        await coll.insert_one({"_id": 0})
        assert keys(await drain(stream, 1)) == [0]

        async def hang_up_soon() -> int:
            await asyncio.sleep(0.1)
            return mongo_double.hangup()

        _, closed = await asyncio.gather(stream.try_next(), hang_up_soon())
        assert closed >= 2  # at least the monitor and the waiting getMore
        await coll.insert_many([{"_id": 1}, {"_id": 2}])  # a retryable write over a dead pool
        assert keys(await drain(stream, 2)) == [1, 2]
        assert await stream.try_next() is None
    assert mongo_double.command_counts()["aggregate"] >= 2
    assert len(mongo_double.documents()) == 3


async def test_not_writable_primary_on_get_more_is_resumed(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """An injected 10107 NotWritablePrimary on getMore makes PyMongo resume, losing nothing."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        mongo_double.fail_commands("getMore", code=10107)
        await coll.insert_one({"_id": "a"})
        started = time.monotonic()
        assert keys(await drain(stream, 1)) == ["a"]
        assert time.monotonic() - started < 3
    assert mongo_double.command_counts()["aggregate"] == 2


async def test_close_connection_fault_on_get_more_is_resumed(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A getMore whose connection is closed instead of answered is resumed by the driver."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        mongo_double.fail_commands("getMore", close_connection=True)
        await coll.insert_one({"_id": "a"})
        assert keys(await drain(stream, 1)) == ["a"]


async def test_resumable_errors_carry_the_server_label(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """getMore errors the server deems resumable carry ResumableChangeStreamError; others don't."""
    db = client[DB]
    opened = await db.command(
        {"aggregate": COLL, "pipeline": [{"$changeStream": {}}], "cursor": {}}
    )
    cursor_id = opened["cursor"]["id"]
    assert "postBatchResumeToken" in opened["cursor"]
    mongo_double.fail_commands("getMore", code=189)
    with pytest.raises(NotPrimaryError) as stepped_down:
        await db.command({"getMore": cursor_id, "collection": COLL, "maxTimeMS": 10})
    assert stepped_down.value.has_error_label("ResumableChangeStreamError")
    mongo_double.fail_commands("getMore", code=2, code_name="BadValue")
    with pytest.raises(OperationFailure) as bad:
        await db.command({"getMore": cursor_id, "collection": COLL, "maxTimeMS": 10})
    assert bad.value.code == 2
    assert not bad.value.has_error_label("ResumableChangeStreamError")
    assert "errorLabels" not in (bad.value.details or {})


async def test_non_resumable_get_more_error_ends_the_stream(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A getMore error without the resumable label is raised and closes the stream."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        mongo_double.fail_commands("getMore", code=2, code_name="BadValue")
        with pytest.raises(OperationFailure) as failure:
            await stream.try_next()
        assert failure.value.code == 2
        assert not stream.alive


async def test_retryable_write_error_is_retried_once(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """An insert failing with a retryable code is retried by the driver and applied once."""
    mongo_double.fail_commands("insert", code=91)
    await client[DB][COLL].insert_one({"_id": "once"})
    assert mongo_double.documents() == [{"_id": "once"}]
    assert mongo_double.command_counts()["insert"] == 2


async def test_forgotten_history_fails_resume_with_286(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Resuming from a token older than the retained history raises code 286."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        await coll.insert_many([{"_id": 0}, {"_id": 1}])
        events = await drain(stream, 2)
        assert await stream.try_next() is None
        idle_token = stream.resume_token
    mongo_double.forget_history()
    with pytest.raises(OperationFailure) as lost:
        await coll.watch(resume_after=events[0]["_id"])
    assert lost.value.code == 286
    assert lost.value.details is not None
    assert lost.value.details["codeName"] == "ChangeStreamHistoryLost"
    async with await coll.watch(resume_after=idle_token, max_await_time_ms=AWAIT_MS) as resumed:
        await coll.insert_one({"_id": 2})
        assert keys(await drain(resumed, 1)) == [2]


async def test_open_stream_that_fell_off_history_fails_with_286(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """An open stream whose unread events were forgotten fails its next getMore with 286."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        await coll.insert_one({"_id": "unread"})
        mongo_double.forget_history()
        with pytest.raises(OperationFailure) as lost:
            await stream.try_next()
        assert lost.value.code == 286
        assert not stream.alive


async def test_history_limit_keeps_only_recent_entries(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """With a history cap, only tokens of still-retained events can be resumed."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        await coll.insert_many([{"_id": i} for i in range(5)])
        events = await drain(stream, 5)
    mongo_double.set_history_limit(2)
    with pytest.raises(OperationFailure) as lost:
        await coll.watch(resume_after=events[2]["_id"])
    assert lost.value.code == 286
    async with await coll.watch(
        resume_after=events[3]["_id"], max_await_time_ms=AWAIT_MS
    ) as resumed:
        assert keys(await drain(resumed, 1)) == [4]


async def test_latency_delays_every_reply(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """set_latency delays replies by at least the given time, and 0 removes the delay."""
    await client.admin.command("ping")
    mongo_double.set_latency(200)
    started = time.monotonic()
    await client.admin.command("ping")
    assert time.monotonic() - started >= 0.2
    mongo_double.set_latency(0)
    started = time.monotonic()
    await client.admin.command("ping")
    assert time.monotonic() - started < 0.2


async def test_command_counts_and_reset(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Commands are counted by name, and resetting the counts starts again from zero."""
    await client[DB][COLL].find_one({})
    await client[DB][COLL].find_one({})
    assert mongo_double.command_counts()["find"] == 2
    mongo_double.reset_command_counts()
    assert mongo_double.command_counts().get("find", 0) == 0


async def test_control_command_over_the_wire(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Every fault hook is reachable as the admin command doubleFault from any client."""
    admin, coll = client.admin, client[DB][COLL]
    seeded = await admin.command({"doubleFault": "seed", "documents": [{"_id": 1}, {"_id": 2}]})
    assert seeded["inserted"] == 2
    await admin.command({"doubleFault": "failCommands", "commands": ["find"], "code": 2})
    with pytest.raises(OperationFailure) as failed:
        await coll.find_one({})
    assert failed.value.code == 2
    assert await coll.count_documents({}) == 2
    counts = (await admin.command({"doubleFault": "commandCounts", "reset": True}))["counts"]
    assert counts["find"] == 1 and "doubleFault" not in counts
    await admin.command({"doubleFault": "latency", "ms": 0})
    await admin.command({"doubleFault": "historyLimit", "entries": 10})
    status = await admin.command({"doubleFault": "status"})
    # The implicit creation of the collection is in the history too, as in an oplog.
    assert status["historyLimit"] == 10 and status["historyEntries"] == 3
    assert (await admin.command({"doubleFault": "forgetHistory"}))["floor"]["_data"]
    await admin.command({"doubleFault": "clear"})
    closed = (await admin.command({"doubleFault": "hangup"}))["closed"]
    assert closed >= 1
    assert await coll.count_documents({}) == 2  # the client reconnects by itself
    with pytest.raises(OperationFailure) as wrong_db:
        await client[DB].command({"doubleFault": "status"})
    assert wrong_db.value.code == 13


async def test_replica_set_uri_discovers_the_primary(mongo_double: MongoDouble) -> None:
    """A ?replicaSet=rs0 URI discovers the double as the primary of rs0."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_double.replica_set_uri, serverSelectionTimeoutMS=5000
    )
    try:
        await client[DB][COLL].insert_one({"_id": 1})
        assert await client[DB][COLL].find_one({}) == {"_id": 1}
        assert client.topology_description.topology_type_name == "ReplicaSetWithPrimary"
    finally:
        await client.close()


async def test_seeding_and_finding_100k_documents_is_fast(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """100,000 ~1 KiB documents seed directly and come back through find in seconds."""
    pad = "x" * 950
    started = time.monotonic()
    mongo_double.insert_documents({"source_id": f"s{i:06d}", "pad": pad} for i in range(100_000))
    seeded = time.monotonic()
    docs = await client[DB][COLL].find({}).to_list()
    finished = time.monotonic()
    assert len(docs) == 100_000
    assert docs[-1]["source_id"] == "s099999"
    assert seeded - started < 10 and finished - seeded < 10


async def test_token_from_another_deployment_is_not_resumable(
    mongo_double: MongoDouble, client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A resume token issued by another double (e.g. before a restart) is refused, not trusted."""
    with MongoDouble() as other:
        foreign: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(other.uri)
        try:
            coll = foreign[DB][COLL]
            async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
                await coll.insert_one({"_id": 1})
                (event,) = await drain(stream, 1)
        finally:
            await foreign.close()
    await client[DB][COLL].insert_one({"_id": 2})
    with pytest.raises(OperationFailure) as refused:
        await client[DB][COLL].watch(resume_after=event["_id"])
    assert refused.value.code in (280, 286)
