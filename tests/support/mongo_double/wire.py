"""MongoDB wire-protocol framing: OP_MSG in both directions, OP_QUERY in, OP_REPLY out.

Only framing lives here; commands are dicts by the time they leave this module. A request
whose *framing* is broken (bad length, unknown opCode) raises :class:`ProtocolError` and the
connection is closed, like the server does; a request whose *body* is broken (bad BSON, bad
section) still yields a :class:`Request` carrying ``error`` so the peer gets an error reply.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

MAX_BSON_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000

FLAG_CHECKSUM = 1
FLAG_MORE_TO_COME = 1 << 1
FLAG_EXHAUST_ALLOWED = 1 << 16
_KNOWN_REQUIRED_FLAGS = FLAG_CHECKSUM | FLAG_MORE_TO_COME

_HEADER = struct.Struct("<iiii")
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")
_REPLY_PREFIX = struct.Struct("<iqii")

# Keep every BSON type round-trippable, including dates outside datetime's range.
CODEC: CodecOptions[dict[str, Any]] = CodecOptions(
    datetime_conversion=DatetimeConversion.DATETIME_AUTO
)


class ProtocolError(Exception):
    """The byte stream cannot be framed any more; the connection must be closed."""


@dataclass(slots=True)
class Request:
    """One decoded client message."""

    request_id: int
    op_code: int
    command: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    more_to_come: bool = False
    exhaust_allowed: bool = False
    legacy_db: str | None = None  # set for OP_QUERY: the database of "<db>.$cmd"

    @property
    def name(self) -> str:
        """The command name: the first key of the command document."""
        return next(iter(self.command), "")


@dataclass(slots=True)
class RawBatch:
    """Pre-encoded BSON documents, emitted as a BSON array without re-encoding them."""

    docs: list[bytes]


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one message; ``None`` on a clean EOF between messages."""
    try:
        header = await reader.readexactly(16)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a message header") from exc
    length, request_id, _response_to, op_code = _HEADER.unpack(header)
    if length < 16 or length > MAX_MESSAGE_SIZE:
        raise ProtocolError(f"invalid message length {length}")
    try:
        body = await reader.readexactly(length - 16)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("connection closed inside a message body") from exc
    if op_code == OP_MSG:
        return _parse_op_msg(request_id, body)
    if op_code == OP_QUERY:
        return _parse_op_query(request_id, body)
    raise ProtocolError(f"unsupported opCode {op_code}")


def _parse_op_msg(request_id: int, body: bytes) -> Request:
    request = Request(request_id, OP_MSG)
    try:
        (flags,) = _UINT32.unpack_from(body, 0)
        request.more_to_come = bool(flags & FLAG_MORE_TO_COME)
        request.exhaust_allowed = bool(flags & FLAG_EXHAUST_ALLOWED)
        if flags & 0xFFFF & ~_KNOWN_REQUIRED_FLAGS:
            raise ValueError(f"unrecognized required OP_MSG flag bits {flags & 0xFFFF:#x}")
        end = len(body) - (4 if flags & FLAG_CHECKSUM else 0)
        request.command = _parse_sections(body, 4, end)
    except Exception as exc:  # any malformed body becomes an error reply, never a crash
        request.error = f"invalid OP_MSG: {exc}"
    return request


def _parse_sections(body: bytes, pos: int, end: int) -> dict[str, Any]:
    command: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        (size,) = _INT32.unpack_from(body, pos)
        if size < 5 or pos + size > end:
            raise ValueError(f"section of kind {kind} has an invalid size {size}")
        if kind == 0:
            if command is not None:
                raise ValueError("more than one kind-0 section")
            command = bson.decode(body[pos : pos + size], CODEC)
        elif kind == 1:
            name_end = body.index(b"\x00", pos + 4, pos + size)
            identifier = body[pos + 4 : name_end].decode()
            if identifier in sequences:
                raise ValueError(f"duplicate document sequence {identifier!r}")
            sequences[identifier] = bson.decode_all(body[name_end + 1 : pos + size], CODEC)
        else:
            raise ValueError(f"unknown section kind {kind}")
        pos += size
    if command is None:
        raise ValueError("no kind-0 section")
    for identifier, docs in sequences.items():
        if identifier in command:
            raise ValueError(f"field {identifier!r} given both in the body and as a sequence")
        command[identifier] = docs
    return command


def _parse_op_query(request_id: int, body: bytes) -> Request:
    request = Request(request_id, OP_QUERY)
    try:
        name_end = body.index(b"\x00", 4)
        full_name = body[4:name_end].decode()
        pos = name_end + 1 + 8  # numberToSkip, numberToReturn
        (size,) = _INT32.unpack_from(body, pos)
        query = bson.decode(body[pos : pos + size], CODEC)
        db, _, coll = full_name.partition(".")
        request.legacy_db = db
        if coll != "$cmd":
            raise ValueError(f"OP_QUERY on {full_name!r}: only commands on <db>.$cmd exist")
        if len(query) >= 1 and next(iter(query)) in {"$query", "query"}:
            inner = query[next(iter(query))]
            if isinstance(inner, dict):
                query = inner
        request.command = query
    except Exception as exc:  # malformed legacy query: error reply, never a crash
        request.error = f"invalid OP_QUERY: {exc}"
    return request


def encode_op_msg(request_id: int, response_to: int, body: bytes, *, more: bool = False) -> bytes:
    """Frame ``body`` (one BSON document) as an OP_MSG with a single kind-0 section."""
    payload = _UINT32.pack(FLAG_MORE_TO_COME if more else 0) + b"\x00" + body
    return _HEADER.pack(16 + len(payload), request_id, response_to, OP_MSG) + payload


def encode_op_reply(request_id: int, response_to: int, body: bytes, *, failed: bool) -> bytes:
    """Frame ``body`` as an OP_REPLY (the answer to a legacy OP_QUERY)."""
    flags = 2 if failed else 0  # QueryFailure
    payload = _REPLY_PREFIX.pack(flags, 0, 0, 1) + body
    return _HEADER.pack(16 + len(payload), request_id, response_to, OP_REPLY) + payload


def encode_document(doc: dict[str, Any]) -> bytes:
    """Encode a reply, splicing :class:`RawBatch` values in as arrays without re-encoding."""
    if not _contains_raw(doc):
        return bson.encode(doc, codec_options=CODEC)
    parts: list[bytes] = []
    for key, value in doc.items():
        name = key.encode() + b"\x00"
        if isinstance(value, RawBatch):
            parts.append(b"\x04" + name + _raw_array(value.docs))
        elif isinstance(value, dict) and _contains_raw(value):
            parts.append(b"\x03" + name + encode_document(value))
        else:
            parts.append(bson.encode({key: value}, codec_options=CODEC)[4:-1])
    return _wrap(parts)


def _contains_raw(doc: dict[str, Any]) -> bool:
    return any(
        isinstance(v, RawBatch) or (isinstance(v, dict) and _contains_raw(v)) for v in doc.values()
    )


def _raw_array(docs: list[bytes]) -> bytes:
    return _wrap([b"\x03" + str(i).encode() + b"\x00" + raw for i, raw in enumerate(docs)])


def _wrap(parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    return _INT32.pack(len(body) + 5) + body + b"\x00"
