"""Write commands: insert, update, delete, findAndModify, shaped like a 7.0 primary's replies.

Statement errors go to ``writeErrors`` (``ordered`` stops at the first one) while the command
itself still answers ``ok: 1``; replies carry ``n``/``nModified``/``upserted`` plus the
``opTime``/``electionId`` a replica-set primary adds. A write that changes nothing (same
bytes) is not recorded in the history, so it produces no change event, as on the server.
"""

from __future__ import annotations

from typing import Any

from bson.int64 import Int64
from bson.objectid import ObjectId

from .collection import Collection, StoredDoc
from .errors import CommandError
from .shaping import project, sort_documents
from .state import Context, command
from .updates import (
    apply_operators,
    apply_replacement,
    check_id_unchanged,
    id_first,
    is_replacement,
    upsert_document,
)

ELECTION_ID = "7fffffff0000000000000001"
MAX_WRITE_BATCH = 100_000


def _statements(ctx: Context, field: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ctx.arg(field, list)
    if not 1 <= len(items) <= MAX_WRITE_BATCH:
        raise CommandError(
            16,
            f"Write batch sizes must be between 1 and {MAX_WRITE_BATCH}. "
            f"Got {len(items)} operations.",
        )
    for item in items:
        if not isinstance(item, dict):
            raise CommandError(14, f"BSON field '{ctx.name}.{field}' must contain objects")
        _check_statement_shape(ctx.name, field, item)
    return items


def _check_statement_shape(name: str, field: str, stmt: dict[str, Any]) -> None:
    """Malformed statements fail the whole command (the server's IDL parse), not one write."""
    if field == "documents":
        return
    if not isinstance(stmt.get("q"), dict):
        raise CommandError(
            40414 if "q" not in stmt else 14, f"BSON field '{name}.{field}.q' must be an object"
        )
    if field == "updates" and not isinstance(stmt.get("u"), dict | list):
        raise CommandError(
            40414 if "u" not in stmt else 14,
            f"BSON field '{name}.{field}.u' must be an object or an array",
        )
    if field == "deletes":
        limit = stmt.get("limit")
        if isinstance(limit, bool) or limit not in (0, 1):
            raise CommandError(9, f"The limit field in delete objects must be 0 or 1. Got {limit}")


def _write_reply(
    ctx: Context, reply: dict[str, Any], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    if errors:
        reply["writeErrors"] = errors
    reply["electionId"] = ObjectId(ELECTION_ID)
    reply["opTime"] = {"ts": ctx.store.clock.last, "t": Int64(1)}
    reply["ok"] = 1.0
    return reply


def _write_error(index: int, exc: CommandError) -> dict[str, Any]:
    return {"index": index, "code": exc.code, **exc.extra, "errmsg": exc.errmsg}


@command("insert")
async def insert(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    docs = _statements(ctx, "documents")
    ordered = ctx.arg("ordered", bool, True)
    n, errors = 0, []
    for index, doc in enumerate(docs):
        try:
            ctx.store.insert(ctx.db, name, doc)
            n += 1
        except CommandError as exc:
            errors.append(_write_error(index, exc))
            if ordered:
                break
    return _write_reply(ctx, {"n": n}, errors)


@command("update")
async def update(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    statements = _statements(ctx, "updates")
    ordered = ctx.arg("ordered", bool, True)
    n = modified = 0
    upserted: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, stmt in enumerate(statements):
        try:
            matched, changed, new_id = _update_one_statement(ctx, name, stmt)
        except CommandError as exc:
            errors.append(_write_error(index, exc))
            if ordered:
                break
            continue
        n += matched
        modified += changed
        if new_id is not ...:
            upserted.append({"index": index, "_id": new_id})
    reply: dict[str, Any] = {"n": n, "nModified": modified}
    if upserted:
        reply["upserted"] = upserted
    return _write_reply(ctx, reply, errors)


def _update_one_statement(ctx: Context, name: str, stmt: dict[str, Any]) -> tuple[int, int, Any]:
    query = stmt["q"]
    if stmt.get("arrayFilters"):
        raise CommandError(2, "arrayFilters are not supported by the MongoDB wire double")
    update_doc, multi = stmt["u"], bool(stmt.get("multi", False))
    replacement = is_replacement(update_doc)
    if replacement and multi:
        raise CommandError(9, "multi update is not supported for replacement-style update")
    hits = ctx.store.find(ctx.db, name, query)
    if not multi:
        hits = hits[:1]
    if hits:
        coll = ctx.store.collection(ctx.db, name)
        assert coll is not None
        changed = sum(1 for old in hits if _rewrite(ctx, coll, old, update_doc, replacement))
        return len(hits), changed, ...
    if not stmt.get("upsert", False):
        return 0, 0, ...
    doc = upsert_document(query, update_doc, replacement)
    ctx.store.insert(ctx.db, name, doc)
    return 1, 0, doc["_id"]


def _rewrite(
    ctx: Context, coll: Collection, old: StoredDoc, update_doc: Any, replacement: bool
) -> StoredDoc | None:
    if replacement:
        new = apply_replacement(old.doc, update_doc)
    else:
        new = apply_operators(old.doc, update_doc, inserting=False)
    check_id_unchanged(old.doc, new)
    return ctx.store.rewrite(coll, old, id_first(new), "replace" if replacement else "update")


@command("delete")
async def delete(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    statements = _statements(ctx, "deletes")
    ordered = ctx.arg("ordered", bool, True)
    n, errors = 0, []
    for index, stmt in enumerate(statements):
        try:
            limit = stmt.get("limit")
            if limit not in (0, 1) or isinstance(limit, bool):
                raise CommandError(
                    9, f"The limit field in delete objects must be 0 or 1. Got {limit}"
                )
            query = stmt.get("q")
            if not isinstance(query, dict):
                raise CommandError(14, "BSON field 'delete.deletes.q' must be an object")
            hits = ctx.store.find(ctx.db, name, query)
            coll = ctx.store.collection(ctx.db, name)
            for item in hits[:1] if limit == 1 else hits:
                assert coll is not None
                ctx.store.delete(coll, item)
                n += 1
        except CommandError as exc:
            errors.append(_write_error(index, exc))
            if ordered:
                break
    return _write_reply(ctx, {"n": n}, errors)


@command("findAndModify", "findandmodify")
async def find_and_modify(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    query = ctx.arg("query", dict, {})
    sort = ctx.arg("sort", dict, {})
    fields = ctx.arg("fields", dict, {})
    remove = bool(ctx.command.get("remove", False))
    update_doc = ctx.command.get("update")
    if remove == (update_doc is not None):
        raise CommandError(9, "Either an update or remove=true must be specified")
    hits = ctx.store.find(ctx.db, name, query)
    if sort:
        hits = sort_documents(hits, sort, key=lambda item: item.doc)
    first = hits[0] if hits else None
    coll = ctx.store.collection(ctx.db, name)
    last: dict[str, Any]
    value: dict[str, Any] | None
    if remove:
        if first is not None and coll is not None:
            ctx.store.delete(coll, first)
        last, value = {"n": int(first is not None)}, None if first is None else first.doc
    elif first is not None and coll is not None:
        replacement = is_replacement(update_doc)
        new = _rewrite(ctx, coll, first, update_doc, replacement)
        after = new.doc if new is not None else first.doc
        last = {"n": 1, "updatedExisting": True}
        value = after if ctx.command.get("new") else first.doc
    elif ctx.command.get("upsert"):
        assert update_doc is not None  # remove is false here
        doc = upsert_document(query, update_doc, is_replacement(update_doc))
        item = ctx.store.insert(ctx.db, name, doc)
        last = {"n": 1, "updatedExisting": False, "upserted": item.doc["_id"]}
        value = item.doc if ctx.command.get("new") else None
    else:
        last, value = {"n": 0, "updatedExisting": False}, None
    if value is not None and fields:
        value = project(value, fields)
    return {"lastErrorObject": last, "value": value, "ok": 1.0}
