"""The double's test commands: set-up answers and ``configureFailPoint`` as mongod has them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, OperationFailure

from tests.contract.streams import AWAIT_MS, drain, keys
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

DB, COLL = "ingestion", "source_configs"


@pytest.fixture
async def client(mongo_double: MongoDouble) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """An async client on the double (application name ``fp-test``), closed after the test."""
    mongo_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_double.uri, serverSelectionTimeoutMS=5000, appname="fp-test", retryReads=False
    )
    yield mongo_client
    await mongo_client.close()


async def fail_point(client: AsyncMongoClient[dict[str, Any]], **command: Any) -> Any:
    """Send ``configureFailPoint`` (first key ``configureFailPoint``) to the admin database."""
    return await client.admin.command({"configureFailPoint": command.pop("name"), **command})


async def test_set_up_commands_describe_a_test_enabled_replica_set_member(
    client: AsyncMongoClient[dict[str, Any]], mongo_double: MongoDouble
) -> None:
    """getCmdLineOpts, serverStatus and getParameter answer what PyMongo's harness reads."""
    opts = await client.admin.command("getCmdLineOpts")
    assert opts["parsed"]["net"]["port"] == mongo_double.port
    assert opts["parsed"]["setParameter"] == {"enableTestCommands": "1"}
    assert "--auth" not in opts["argv"]
    status = await client.admin.command("serverStatus")
    assert status["storageEngine"]["name"] == "inMemory"
    params = await client.admin.command("getParameter", "*")
    assert params["enableTestCommands"] is True
    assert params["authenticationMechanisms"] == []
    one = await client.admin.command({"getParameter": 1, "enableTestCommands": 1})
    assert one["enableTestCommands"] is True
    with pytest.raises(OperationFailure) as refused:
        await client.admin.command({"getParameter": 1, "notAParameter": 1})
    assert refused.value.code == 72


async def test_times_mode_fires_n_times_and_reports_count(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    """``{times: 2}`` fails the next two finds with the code and mongod's message, then stops."""
    data = {"failCommands": ["find"], "errorCode": 2}
    reply = await fail_point(client, name="failCommand", mode={"times": 2}, data=data)
    assert reply["count"] == 0
    coll = client[DB][COLL]
    for _ in range(2):
        with pytest.raises(OperationFailure) as failed:
            await coll.find_one({})
        assert failed.value.code == 2
        assert "Failing command via 'failCommand' failpoint" in str(failed.value)
    assert await coll.find_one({}) is None
    assert (await fail_point(client, name="failCommand", mode="off"))["count"] == 2


async def test_skip_mode_and_app_name(
    client: AsyncMongoClient[dict[str, Any]], mongo_double: MongoDouble
) -> None:
    """``{skip: 1}`` lets one find through first; ``appName`` spares other applications."""
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_double.uri, appname="other")
    try:
        data = {"failCommands": ["find"], "errorCode": 2, "appName": "fp-test"}
        await fail_point(client, name="failCommand", mode={"skip": 1}, data=data)
        assert await other[DB][COLL].find_one({}) is None  # another application: never failed
        assert await client[DB][COLL].find_one({}) is None  # skipped
        with pytest.raises(OperationFailure):
            await client[DB][COLL].find_one({})
        await fail_point(client, name="failCommand", mode="off")
    finally:
        await other.close()


async def test_fail_command_on_get_more_carries_no_resumable_label(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    """failCommand fires before getMore checks its cursor out: error 6 is not resumed."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        data = {"failCommands": ["getMore"], "errorCode": 6}
        await fail_point(client, name="failCommand", mode={"times": 1}, data=data)
        with pytest.raises(OperationFailure) as failed:
            await stream.try_next()
    assert failed.value.code == 6
    assert not failed.value.has_error_label("ResumableChangeStreamError")


async def test_explicit_error_labels_make_any_code_resumable(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    """An ``errorLabels`` array replaces the server's labels: code 50 is resumed with it."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        await coll.insert_one({"_id": 1})
        data = {
            "failCommands": ["getMore"],
            "errorCode": 50,
            "errorLabels": ["ResumableChangeStreamError"],
        }
        await fail_point(client, name="failCommand", mode={"times": 1}, data=data)
        assert keys(await drain(stream, 1)) == [1]


async def test_fail_get_more_after_checkout_is_labelled_and_resumed(
    client: AsyncMongoClient[dict[str, Any]], mongo_double: MongoDouble
) -> None:
    """failGetMoreAfterCursorCheckout errors get the server's label, so PyMongo resumes."""
    coll = client[DB][COLL]
    async with await coll.watch(max_await_time_ms=AWAIT_MS) as stream:
        await coll.insert_one({"_id": 1})
        point = "failGetMoreAfterCursorCheckout"
        await fail_point(client, name=point, mode={"times": 1}, data={"errorCode": 6})
        assert keys(await drain(stream, 1)) == [1]
    assert mongo_double.command_counts()["aggregate"] == 2


async def test_close_connection_block_connection_and_write_concern_error(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    """closeConnection hangs up, blockConnection delays, writeConcernError follows the write."""
    coll = client[DB][COLL]
    data: dict[str, Any] = {"failCommands": ["find"], "closeConnection": True}
    await fail_point(client, name="failCommand", mode={"times": 1}, data=data)
    with pytest.raises(AutoReconnect):
        await coll.find_one({})
    data = {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 300}
    await fail_point(client, name="failCommand", mode={"times": 1}, data=data)
    started = time.monotonic()
    assert await coll.find_one({}) is None
    assert time.monotonic() - started >= 0.3
    concern = {"code": 64, "errmsg": "waiting for replication timed out"}
    data = {"failCommands": ["insert"], "writeConcernError": concern}
    await fail_point(client, name="failCommand", mode={"times": 1}, data=data)
    reply = await client[DB].command({"insert": COLL, "documents": [{"_id": 7}]})
    assert reply["writeConcernError"]["code"] == 64
    assert await coll.find_one({"_id": 7}) == {"_id": 7}  # the write itself happened


async def test_unknown_fail_point_and_wrong_database_are_refused(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    """A fail point the double lacks answers 266 "not found"; only admin may configure one."""
    with pytest.raises(OperationFailure) as unknown:
        await fail_point(client, name="stopReplProducer", mode="alwaysOn")
    assert unknown.value.code == 266
    assert "stopReplProducer not found" in str(unknown.value)
    with pytest.raises(OperationFailure) as elsewhere:
        await client[DB].command({"configureFailPoint": "failCommand", "mode": "off"})
    assert elsewhere.value.code == 13
    with pytest.raises(OperationFailure) as bad_mode:
        await fail_point(client, name="failCommand", mode={"times": -1})
    assert bad_mode.value.code == 2
