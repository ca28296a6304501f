"""The double at the byte level and as a process: malformed input, legacy handshake, CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import json_util
from bson.objectid import ObjectId
from pymongo import AsyncMongoClient

from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013


def op_msg(
    request_id: int,
    command: dict[str, Any],
    *,
    flags: int = 0,
    sequences: dict[str, list[dict[str, Any]]] | None = None,
) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + bson.encode(command)
    for name, docs in (sequences or {}).items():
        section = name.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        payload += b"\x01" + struct.pack("<i", len(section) + 4) + section
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_MSG) + payload


def op_query(request_id: int, collection: str, query: dict[str, Any]) -> bytes:
    payload = struct.pack("<i", 0) + collection.encode() + b"\x00" + struct.pack("<ii", 0, -1)
    payload += bson.encode(query)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, OP_QUERY) + payload


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, int, dict[str, Any]]:
    """Read one reply; returns (responseTo, opCode, document)."""
    length, _, response_to, op_code = struct.unpack("<iiii", await reader.readexactly(16))
    body = await reader.readexactly(length - 16)
    if op_code == OP_MSG:
        assert body[4] == 0
        return response_to, op_code, bson.decode(body[5:])
    assert op_code == OP_REPLY
    return response_to, op_code, bson.decode(body[20:])


async def roundtrip(double: MongoDouble, message: bytes) -> tuple[int, int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", double.port)
    try:
        writer.write(message)
        await writer.drain()
        return await asyncio.wait_for(read_reply(reader), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_legacy_op_query_handshake(mongo_double: MongoDouble) -> None:
    """isMaster over OP_QUERY gets an OP_REPLY; other OP_QUERY commands are refused."""
    response_to, op_code, hello = await roundtrip(
        mongo_double, op_query(7, "admin.$cmd", {"isMaster": 1, "helloOk": True})
    )
    assert (response_to, op_code) == (7, OP_REPLY)
    assert hello["ismaster"] is True and hello["helloOk"] is True
    assert hello["me"] == mongo_double.address and hello["hosts"] == [mongo_double.address]
    _, _, refused = await roundtrip(mongo_double, op_query(8, "admin.$cmd", {"ping": 1}))
    assert refused["ok"] == 0 and refused["code"] == 5739101


async def test_op_msg_document_sequence_insert(mongo_double: MongoDouble) -> None:
    """An insert whose documents come as a kind-1 document sequence is applied."""
    message = op_msg(
        3, {"insert": "c", "$db": "d"}, sequences={"documents": [{"_id": 1}, {"_id": 2}]}
    )
    response_to, _, reply = await roundtrip(mongo_double, message)
    assert response_to == 3 and reply["n"] == 2 and reply["ok"] == 1.0
    assert "$clusterTime" in reply and "operationTime" in reply
    assert mongo_double.documents(db="d", collection="c") == [{"_id": 1}, {"_id": 2}]


async def test_malformed_requests_get_errors_and_the_server_survives(
    mongo_double: MongoDouble,
) -> None:
    """Bad BSON, a missing $db or an unknown flag get error replies; garbage framing a hang-up."""
    bad_bson = bytearray(op_msg(1, {"ping": 1, "$db": "admin"}))
    bad_bson[25] = 0x42  # not a BSON type: the first element of the command is unreadable
    _, _, reply = await roundtrip(mongo_double, bytes(bad_bson))
    assert reply["ok"] == 0
    _, _, reply = await roundtrip(mongo_double, op_msg(2, {"ping": 1}))
    assert reply["ok"] == 0
    _, _, reply = await roundtrip(
        mongo_double, op_msg(3, {"ping": 1, "$db": "admin"}, flags=1 << 4)
    )
    assert reply["ok"] == 0
    reader, writer = await asyncio.open_connection("127.0.0.1", mongo_double.port)
    writer.write(struct.pack("<iiii", 3, 0, 0, OP_MSG))  # a length no message can have
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    await writer.wait_closed()
    _, _, reply = await roundtrip(mongo_double, op_msg(4, {"ping": 1, "$db": "admin"}))
    assert reply["ok"] == 1.0


async def test_more_to_come_request_gets_no_reply(mongo_double: MongoDouble) -> None:
    """A request flagged moreToCome (w:0) is executed without a reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", mongo_double.port)
    try:
        writer.write(op_msg(1, {"insert": "c", "documents": [{"_id": 1}], "$db": "d"}, flags=2))
        writer.write(op_msg(2, {"ping": 1, "$db": "admin"}))
        await writer.drain()
        response_to, _, reply = await asyncio.wait_for(read_reply(reader), 5)
        assert response_to == 2 and reply["ok"] == 1.0
    finally:
        writer.close()
        await writer.wait_closed()
    assert mongo_double.documents(db="d", collection="c") == [{"_id": 1}]


async def test_standalone_process_seeds_serves_and_stops(tmp_path: Path) -> None:
    """python -m ... --port 0 --seed prints READY with a URI, serves the seed, exits on SIGTERM."""
    oid = ObjectId()
    seed = tmp_path / "seed.json"
    seed.write_text(json_util.dumps([{"_id": oid, "source_id": "s1"}, {"source_id": "s2"}]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.mongo_double",
        "--port",
        "0",
        "--seed",
        str(seed),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        assert line.startswith("MONGO_DOUBLE_READY mongodb://127.0.0.1:")
        uri = line.split(maxsplit=1)[1].strip()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            uri, serverSelectionTimeoutMS=5000
        )
        try:
            docs = await client.ingestion.source_configs.find({}).to_list()
        finally:
            await client.close()
        assert [d["source_id"] for d in docs] == ["s1", "s2"]
        assert docs[0]["_id"] == oid
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.read()
        await process.stderr.read()


async def test_standalone_process_rejects_a_bad_seed(tmp_path: Path) -> None:
    """A seed file that is not a JSON array of objects stops start-up with one clear line."""
    seed = tmp_path / "seed.json"
    seed.write_text('{"not": "an array"}')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.mongo_double",
        "--port",
        "0",
        "--seed",
        str(seed),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 2
    assert out == b""
    assert b"must hold a JSON array of objects" in err and b"Traceback" not in err
