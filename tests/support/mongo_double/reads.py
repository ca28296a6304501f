"""Read commands and cursors: find, getMore, killCursors, count, distinct, aggregate.

Find results are encoded once and served in batches (101 documents first, then up to
16 MiB per getMore, or ``batchSize``), so a 100k-document load stays fast. A change-stream
getMore waits up to its ``maxTimeMS`` (1 s by default, like the server's awaitData cursors)
and wakes as soon as a write lands; every stream reply carries ``postBatchResumeToken``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import bson
from bson.int64 import Int64

from .aggregating import run_stage
from .changestreams import StreamCursor, history_lost, is_change_stream, next_batch, open_stream
from .errors import CommandError, not_emulated
from .injecting import injected_error
from .shaping import project, sort_documents
from .state import Context, FindCursor, command
from .values import MISSING, as_number, canon, lookup
from .wire import CODEC, MAX_BSON_SIZE, RawBatch

DEFAULT_FIRST_BATCH = 101
DEFAULT_AWAIT_MS = 1000


def take_batch(cursor: FindCursor, count: int | None) -> list[bytes]:
    """Up to ``count`` documents (all if None) within the 16 MiB batch limit, at least one."""
    out: list[bytes] = []
    size = 0
    docs, index = cursor.docs, cursor.offset
    while index < len(docs) and (count is None or len(out) < count):
        raw = docs[index]
        if out and size + len(raw) > MAX_BSON_SIZE:
            break
        out.append(raw)
        size += len(raw)
        index += 1
    cursor.offset = index
    return out


def cursor_reply(
    ns: str, key: str, batch: list[bytes], cursor_id: int, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {key: RawBatch(batch), **extra, "id": Int64(cursor_id), "ns": ns}
    return {"cursor": body, "ok": 1.0}


def serve_documents(
    ctx: Context, ns: str, docs: list[bytes], first: int | None, single: bool
) -> dict[str, Any]:
    """Answer with a first batch and keep a cursor open for the rest (unless single batch)."""
    cursor = FindCursor(0, ns, docs)
    batch = take_batch(cursor, first)
    cursor_id = 0
    if cursor.offset < len(docs) and not single:
        cursor.docs = docs
        cursor_id = ctx.state.cursors.register(cursor)
    return cursor_reply(ns, "firstBatch", batch, cursor_id)


@command("find")
async def find(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    query = ctx.arg("filter", dict, {})
    sort = ctx.arg("sort", dict, {})
    projection = ctx.arg("projection", dict, {})
    skip = ctx.number("skip", 0) or 0
    limit = ctx.number("limit", 0) or 0
    batch_size = ctx.number("batchSize", None)
    if ctx.command.get("tailable") or ctx.command.get("awaitData"):
        raise CommandError(
            2,
            "error processing query: tailable cursor requested on non capped collection "
            f"{ctx.db}.{name}",
        )
    if projection:
        project({}, projection)  # refuse a bad projection even when nothing matches
    hits = ctx.store.find(ctx.db, name, query)
    if sort:
        sort_documents([], sort, key=lambda item: item)  # likewise for a bad sort
        hits = sort_documents(hits, sort, key=lambda item: item.doc)
    hits = hits[skip : skip + limit if limit else None]
    if projection:
        docs = [bson.encode(project(item.doc, projection), codec_options=CODEC) for item in hits]
    else:
        docs = [item.raw for item in hits]
    first = DEFAULT_FIRST_BATCH if batch_size is None else batch_size
    if limit:
        first = min(first, limit)
    single = bool(ctx.command.get("singleBatch", False))
    return serve_documents(ctx, f"{ctx.db}.{name}", docs, first, single)


@command("getMore")
async def get_more(ctx: Context) -> dict[str, Any]:
    cursor_id = ctx.arg("getMore", int)
    coll = ctx.arg("collection", str)
    batch_size = ctx.number("batchSize", None, minimum=1)
    cursor = ctx.state.cursors.get(int(cursor_id))
    if cursor.ns != f"{ctx.db}.{coll}":
        raise CommandError(
            13,
            f"Requested getMore on namespace '{ctx.db}.{coll}', but cursor belongs to a "
            f"different namespace {cursor.ns}",
        )
    app_name = ctx.conn.app_name if ctx.conn is not None else None
    point = ctx.state.faults.points.after_checkout(app_name, cursor.ns)
    if point is not None:
        error = injected_error(ctx.state, point, "getMore", ctx.command)
        ctx.state.cursors.kill(cursor.id)  # a getMore that fails destroys its cursor
        raise error
    if isinstance(cursor, FindCursor):
        batch = take_batch(cursor, batch_size)
        if cursor.offset >= len(cursor.docs):
            ctx.state.cursors.kill(cursor.id)
            return cursor_reply(cursor.ns, "nextBatch", batch, 0)
        return cursor_reply(cursor.ns, "nextBatch", batch, cursor.id)
    max_time = ctx.number("maxTimeMS", DEFAULT_AWAIT_MS) or 0
    return await _stream_get_more(ctx, cursor, batch_size, max_time / 1000)


async def _stream_get_more(
    ctx: Context, cursor: StreamCursor, batch_size: int | None, wait: float
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        signal = ctx.store.change_signal()
        try:
            events, invalidated = next_batch(ctx.store, cursor, batch_size)
        except CommandError:
            ctx.state.cursors.kill(cursor.id)
            raise
        remaining = deadline - time.monotonic()
        if events or invalidated or remaining <= 0:
            break
        try:
            await asyncio.wait_for(signal.wait(), remaining)
        except TimeoutError:
            pass
        if ctx.state.cursors.peek(cursor.id) is not cursor:
            raise CommandError(237, f"cursor id {cursor.id} was killed while waiting")
    cursor_id = cursor.id
    if invalidated:
        ctx.state.cursors.kill(cursor.id)
        cursor_id = 0
    return cursor_reply(
        cursor.ns,
        "nextBatch",
        events,
        cursor_id,
        postBatchResumeToken=cursor.position.token(ctx.store.deployment),
    )


@command("killCursors")
async def kill_cursors(ctx: Context) -> dict[str, Any]:
    ctx.arg("killCursors", str)
    killed: list[Int64] = []
    missing: list[Int64] = []
    for cursor_id in ctx.arg("cursors", list):
        (killed if ctx.state.cursors.kill(int(cursor_id)) else missing).append(Int64(cursor_id))
    return {
        "cursorsKilled": killed,
        "cursorsNotFound": missing,
        "cursorsAlive": [],
        "cursorsUnknown": [],
        "ok": 1.0,
    }


@command("count")
async def count(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    hits = ctx.store.find(ctx.db, name, ctx.arg("query", dict, {}))
    skip = ctx.number("skip", 0) or 0
    limit = ctx.number("limit", 0) or 0
    hits = hits[skip : skip + limit if limit else None]
    return {"n": len(hits), "ok": 1.0}


@command("distinct")
async def distinct(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    key = ctx.arg("key", str)
    seen: dict[Any, Any] = {}
    for item in ctx.store.find(ctx.db, name, ctx.arg("query", dict, {})):
        for value in lookup(item.doc, key):
            for element in value if isinstance(value, list) else [value]:
                if element is not MISSING:
                    seen.setdefault(canon(element), element)
    return {"values": list(seen.values()), "ok": 1.0}


@command("aggregate")
async def aggregate(ctx: Context) -> dict[str, Any]:
    pipeline = ctx.arg("pipeline", list)
    options = ctx.arg("cursor", dict, None)
    if options is None:
        raise CommandError(
            9, "The 'cursor' option is required, except for aggregate with the explain argument"
        )
    batch_size = options.get("batchSize")
    if batch_size is not None and (as_number(batch_size) is None or batch_size < 0):
        raise CommandError(51024, "BSON field 'batchSize' value must be >= 0")
    target = ctx.command["aggregate"]
    if is_change_stream(pipeline):
        return _open_change_stream(ctx, target, pipeline, batch_size)
    if target == 1 or not isinstance(target, str):
        raise not_emulated("collection-less aggregations")
    name = ctx.collection_name()
    docs = [item.doc for item in ctx.store.find(ctx.db, name, {})]
    for stage in pipeline:
        docs = run_stage(stage, docs)
    encoded = [bson.encode(doc, codec_options=CODEC) for doc in docs]
    first = DEFAULT_FIRST_BATCH if batch_size is None else int(batch_size)
    return serve_documents(ctx, f"{ctx.db}.{name}", encoded, first, False)


def _open_change_stream(
    ctx: Context, target: Any, pipeline: list[Any], batch_size: Any
) -> dict[str, Any]:
    concern = ctx.command.get("readConcern")
    level = concern.get("level") if isinstance(concern, dict) else None
    if level is not None and level != "majority":
        raise CommandError(
            72,
            "Aggregation stage $changeStream cannot run with a readConcern other than "
            f"'majority'. Current readConcern: {{ level: \"{level}\" }}",
        )
    cursor = open_stream(ctx.store, ctx.db, target, pipeline)
    if cursor.position < ctx.store.floor:
        raise history_lost()
    limit = DEFAULT_FIRST_BATCH if batch_size is None else int(batch_size)
    events, invalidated = next_batch(ctx.store, cursor, limit)
    cursor_id = 0 if invalidated else ctx.state.cursors.register(cursor)
    return cursor_reply(
        cursor.ns,
        "firstBatch",
        events,
        cursor_id,
        postBatchResumeToken=cursor.position.token(ctx.store.deployment),
    )
