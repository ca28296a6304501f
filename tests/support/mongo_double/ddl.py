"""Namespace commands: create, drop, dropDatabase, list/create/drop indexes and collections.

Unique indexes (optionally sparse or partial) are enforced on exact field values; other
index types are only recorded so ``listIndexes`` shows them. Dropping a collection records
a ``drop`` entry (streams on it then see ``drop`` + ``invalidate``); renaming one (within
its database) records a ``rename`` entry, which streams on the old or the new name see as
``rename`` (with ``to``) + ``invalidate``; dropping a database records one ``drop`` per
collection and then ``dropDatabase``.
"""

from __future__ import annotations

from typing import Any

from .errors import CommandError, not_emulated
from .state import Context, command
from .values import canon, matches

_CREATE_OPTIONS_NOT_EMULATED = {
    "capped",
    "timeseries",
    "clusteredIndex",
    "viewOn",
    "validator",
    "encryptedFields",
}


_GENERIC_ARGUMENTS = {"lsid", "txnNumber", "writeConcern", "comment", "maxTimeMS", "apiVersion"}


def _listing(ns: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cursor": {"firstBatch": docs, "id": 0, "ns": ns}, "ok": 1.0}


@command("create")
async def create(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    for option in _CREATE_OPTIONS_NOT_EMULATED & set(ctx.command):
        if ctx.command[option]:
            raise not_emulated(f"create with {option}")
    images = _images_option(ctx.command.get("changeStreamPreAndPostImages"))
    # 7.0: creating an existing collection with identical (here: default) options succeeds.
    coll = ctx.store.collection(ctx.db, name, create=True)
    assert coll is not None
    if images is not None:
        coll.images = images
    return {"ok": 1.0}


@command("collMod")
async def coll_mod(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    others = set(ctx.command) - {"collMod", "changeStreamPreAndPostImages"}
    others = {k for k in others if not k.startswith("$") and k not in _GENERIC_ARGUMENTS}
    if others:
        raise not_emulated(f"collMod with {sorted(others)[0]}")
    coll = ctx.store.collection(ctx.db, name)
    if coll is None:
        raise CommandError(26, f"ns does not exist: {ctx.db}.{name}")
    images = _images_option(ctx.command.get("changeStreamPreAndPostImages"))
    ctx.store.modify(coll, images)
    return {"ok": 1.0}


def _images_option(value: Any) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("enabled"), bool):
        raise CommandError(
            40414, "BSON field 'changeStreamPreAndPostImages.enabled' is missing or not a bool"
        )
    return bool(value["enabled"])


@command("drop")
async def drop(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    coll = ctx.store.drop(ctx.db, name)
    indexes = 0 if coll is None else len(coll.indexes)
    return {"nIndexesWas": indexes, "ns": f"{ctx.db}.{name}", "ok": 1.0}


@command("renameCollection")
async def rename_collection(ctx: Context) -> dict[str, Any]:
    if ctx.db != "admin":
        raise CommandError(13, "renameCollection may only be run against the admin database.")
    source, target = ctx.arg("renameCollection", str), ctx.arg("to", str)
    source_db, _, source_coll = source.partition(".")
    target_db, _, target_coll = target.partition(".")
    if not source_coll or not target_coll:
        bad = source if not source_coll else target
        raise CommandError(73, f"Invalid namespace specified '{bad}'")
    if source_db != target_db:
        raise not_emulated("renameCollection across databases")
    if source_coll == target_coll:
        raise CommandError(20, "Can't rename a collection to itself")
    ctx.store.rename(
        source_db, source_coll, target_coll, drop_target=bool(ctx.command.get("dropTarget"))
    )
    return {"ok": 1.0}


@command("dropDatabase")
async def drop_database(ctx: Context) -> dict[str, Any]:
    ctx.store.drop_database(ctx.db)
    return {"dropped": ctx.db, "ok": 1.0}


@command("listCollections")
async def list_collections(ctx: Context) -> dict[str, Any]:
    query = ctx.arg("filter", dict, {})
    name_only = bool(ctx.command.get("nameOnly", False))
    docs = []
    for name in ctx.store.collection_names(ctx.db):
        coll = ctx.store.collection(ctx.db, name)
        assert coll is not None
        info: dict[str, Any] = {"name": name, "type": "collection"}
        if not name_only:
            info["options"] = {}
            info["info"] = {"readOnly": False, "uuid": coll.uuid}
            info["idIndex"] = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        if matches(info, query):
            docs.append(info)
    return _listing(f"{ctx.db}.$cmd.listCollections", docs)


@command("listDatabases")
async def list_databases(ctx: Context) -> dict[str, Any]:
    names = ctx.store.database_names()
    docs = [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names]
    docs = [d for d in docs if matches(d, ctx.arg("filter", dict, {}))]
    if ctx.command.get("nameOnly"):
        return {"databases": [{"name": d["name"]} for d in docs], "ok": 1.0}
    return {"databases": docs, "totalSize": 0, "totalSizeMb": 0, "ok": 1.0}


@command("listIndexes")
async def list_indexes(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    coll = ctx.store.collection(ctx.db, name)
    if coll is None:
        raise CommandError(26, f"ns does not exist: {ctx.db}.{name}")
    return _listing(f"{ctx.db}.$cmd.listIndexes.{name}", list(coll.indexes.values()))


@command("createIndexes")
async def create_indexes(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    specs = ctx.arg("indexes", list)
    created = ctx.store.collection(ctx.db, name) is None
    coll = ctx.store.collection(ctx.db, name, create=True)
    assert coll is not None
    before = len(coll.indexes)
    added: list[dict[str, Any]] = []
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("key"), dict) or not spec["key"]:
            raise CommandError(9, "Index spec must have a non-empty 'key' object")
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise CommandError(9, "Index spec must have a string 'name'")
        _check_conflicts(coll.indexes, spec)
        if spec["name"] not in coll.indexes:
            coll.add_index({"v": 2, **spec})
            added.append(coll.indexes[spec["name"]])
    ctx.store.indexes_changed(coll, "createIndexes", added)
    reply: dict[str, Any] = {
        "numIndexesBefore": before,
        "numIndexesAfter": len(coll.indexes),
        "createdCollectionAutomatically": created,
    }
    if before == len(coll.indexes):
        reply["note"] = "all indexes already exist"
    reply["ok"] = 1.0
    return reply


def _check_conflicts(existing: dict[str, dict[str, Any]], spec: dict[str, Any]) -> None:
    key = canon(spec["key"])
    for other in existing.values():
        same_key = canon(other["key"]) == key
        if other["name"] == spec["name"] and not same_key:
            raise CommandError(
                86, f"An existing index has the same name as the requested index: {other}"
            )
        if same_key and other["name"] != spec["name"]:
            raise CommandError(85, f"Index already exists with a different name: {other['name']}")
        if same_key and bool(other.get("unique")) != bool(spec.get("unique")):
            raise CommandError(86, f"An index with the same key but other options exists: {other}")


@command("dropIndexes", "deleteIndexes")
async def drop_indexes(ctx: Context) -> dict[str, Any]:
    name = ctx.collection_name()
    coll = ctx.store.collection(ctx.db, name)
    if coll is None:
        raise CommandError(26, f"ns not found {ctx.db}.{name}")
    before = len(coll.indexes)
    target = ctx.command.get("index")
    dropped: list[dict[str, Any]] = []
    if target == "*":
        for index_name in [n for n in coll.indexes if n != "_id_"]:
            dropped.append(coll.indexes[index_name])
            coll.drop_index(index_name)
    else:
        matches_target = [
            n
            for n, spec in coll.indexes.items()
            if n == target or (isinstance(target, dict) and canon(spec["key"]) == canon(target))
        ]
        if not matches_target:
            raise CommandError(
                27, f"index not found with name [{target}]", code_name_="IndexNotFound"
            )
        if matches_target[0] == "_id_":
            raise CommandError(72, "cannot drop _id index")
        dropped.append(coll.indexes[matches_target[0]])
        coll.drop_index(matches_target[0])
    ctx.store.indexes_changed(coll, "dropIndexes", dropped)
    return {"nIndexesWas": before, "ok": 1.0}
