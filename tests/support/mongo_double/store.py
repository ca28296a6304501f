"""The double's data: collections, unique indexes, the cluster clock and the event history.

Every write is applied here and, when it changes something, appended to ``history`` with a
fresh cluster time, the double's stand-in for the oplog. Change streams read that history
and resume tokens are positions in it, so "resume after X" means exactly "every entry after
X". History can be forgotten or capped; a position older than ``floor`` is gone, which is
how a real primary loses resumability once its oplog rolls over.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import bson
from bson.binary import Binary
from bson.objectid import ObjectId

from .describing import update_description
from .errors import CommandError
from .tokens import RANK_EVENT, RANK_START, Clock, Position
from .updates import id_first, validate_document
from .values import MISSING, canon, check_query, get_path, matches
from .wire import CODEC, MAX_BSON_SIZE


@dataclass(slots=True)
class StoredDoc:
    """A document version: the decoded dict (never mutated) and its BSON bytes."""

    doc: dict[str, Any]
    raw: bytes


def stored(doc: dict[str, Any]) -> StoredDoc:
    raw = bson.encode(doc, codec_options=CODEC)
    if len(raw) > MAX_BSON_SIZE:
        raise CommandError(
            10334, f"object to insert too large: {len(raw)} bytes", code_name_="BSONObjectTooLarge"
        )
    return StoredDoc(doc, raw)


@dataclass(slots=True)
class Entry:
    """One history entry (an oplog entry): a change to one document or namespace."""

    pos: Position
    wall: float  # seconds since the epoch; rendered as a BSON date with millisecond precision
    op: str  # insert | update | replace | delete | drop | rename | dropDatabase
    db: str
    coll: str | None
    key: dict[str, Any] | None
    full: StoredDoc | None
    description: dict[str, Any] | None
    to: str | None = None  # rename: the new collection name (same database)


class Collection:
    """Documents in natural (insertion) order plus the indexes declared on them."""

    def __init__(self, db: str, name: str) -> None:
        self.db = db
        self.name = name
        self.uuid = Binary(uuid.uuid4().bytes, 4)
        self.docs: dict[Hashable, StoredDoc] = {}
        self.indexes: dict[str, dict[str, Any]] = {
            "_id_": {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        }
        self._unique: dict[str, dict[Hashable, Hashable]] = {}

    @property
    def ns(self) -> str:
        return f"{self.db}.{self.name}"

    def add_index(self, spec: dict[str, Any]) -> None:
        """Declare an index; a unique one is built (DuplicateKey if existing data violates it)."""
        name = spec["name"]
        if spec.get("unique") and name != "_id_":
            table: dict[Hashable, Hashable] = {}
            for id_key, item in self.docs.items():
                value = self._index_value(spec, item.doc)
                if value is not None and value in table:
                    raise self._dup_error(spec, item.doc)
                if value is not None:
                    table[value] = id_key
            self._unique[name] = table
        self.indexes[name] = spec

    def drop_index(self, name: str) -> None:
        self.indexes.pop(name, None)
        self._unique.pop(name, None)

    def _index_value(self, spec: dict[str, Any], doc: dict[str, Any]) -> Hashable | None:
        values = [get_path(doc, path) for path in spec["key"]]
        if spec.get("sparse") and all(v is MISSING for v in values):
            return None
        partial = spec.get("partialFilterExpression")
        if partial is not None and not matches(doc, partial):
            return None
        return tuple(canon(v) for v in values)

    def _dup_error(self, spec: dict[str, Any], doc: dict[str, Any]) -> CommandError:
        key_value = {path: _or_null(get_path(doc, path)) for path in spec["key"]}
        shown = ", ".join(f"{k}: {_show(v)}" for k, v in key_value.items())
        return CommandError(
            11000,
            f"E11000 duplicate key error collection: {self.ns} index: {spec['name']} "
            f"dup key: {{ {shown} }}",
            extra={"keyPattern": dict(spec["key"]), "keyValue": key_value},
        )

    def check_unique(self, id_key: Hashable, doc: dict[str, Any], replacing: bool) -> None:
        """Raise DuplicateKey if writing ``doc`` under ``id_key`` breaks a unique index."""
        if not replacing and id_key in self.docs:
            raise self._dup_error(self.indexes["_id_"], doc)
        for name, table in self._unique.items():
            value = self._index_value(self.indexes[name], doc)
            if value is not None and table.get(value, id_key) != id_key:
                raise self._dup_error(self.indexes[name], doc)

    def put(self, id_key: Hashable, new: StoredDoc) -> None:
        old = self.docs.get(id_key)
        for name, table in self._unique.items():
            spec = self.indexes[name]
            if old is not None:
                table.pop(self._index_value(spec, old.doc), None)
            value = self._index_value(spec, new.doc)
            if value is not None:
                table[value] = id_key
        self.docs[id_key] = new

    def remove(self, id_key: Hashable) -> StoredDoc | None:
        old = self.docs.pop(id_key, None)
        if old is not None:
            for name, table in self._unique.items():
                table.pop(self._index_value(self.indexes[name], old.doc), None)
        return old


def _or_null(value: Any) -> Any:
    return None if value is MISSING else value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    return repr(value)


class Store:
    """All databases of the double, its cluster clock and its change history."""

    def __init__(self) -> None:
        self.clock = Clock()
        # Tokens carry this id, like real tokens carry a collection UUID: a token issued by
        # another deployment (e.g. a previous run of the double) is never resumable here.
        self.deployment = f"{random.getrandbits(32):08X}"
        self.collections: dict[tuple[str, str], Collection] = {}
        self.history: list[Entry] = []
        self.floor = Position.at(self.clock.last, RANK_START)
        self.history_limit: int | None = None
        self._changed: asyncio.Event | None = None

    # -- namespaces ---------------------------------------------------------------------
    def collection(self, db: str, name: str, *, create: bool = False) -> Collection | None:
        coll = self.collections.get((db, name))
        if coll is None and create:
            coll = self.collections[(db, name)] = Collection(db, name)
        return coll

    def collection_names(self, db: str) -> list[str]:
        return [name for (d, name) in self.collections if d == db]

    def database_names(self) -> list[str]:
        return sorted({d for (d, _) in self.collections})

    # -- documents ----------------------------------------------------------------------
    def find(self, db: str, name: str, query: dict[str, Any]) -> list[StoredDoc]:
        check_query(query)
        coll = self.collection(db, name)
        if coll is None:
            return []
        if not query:
            return list(coll.docs.values())
        only_id = query.get("_id", MISSING) if len(query) == 1 else MISSING
        if only_id is not MISSING and not (isinstance(only_id, dict) and _has_operator(only_id)):
            hit = coll.docs.get(canon(only_id))
            return [hit] if hit is not None and matches(hit.doc, query) else []
        simple = _simple_equalities(query)
        if simple is not None:
            return [item for item in coll.docs.values() if _equal_fields(item.doc, simple)]
        return [item for item in coll.docs.values() if matches(item.doc, query)]

    def insert(
        self, db: str, name: str, doc: dict[str, Any], *, private: bool = False
    ) -> StoredDoc:
        """Insert one document (``_id`` generated if absent); DuplicateKey on conflicts.

        ``private``: store a copy, for documents the caller may still mutate (the Python API);
        documents decoded from the wire are already private.
        """
        doc = id_first(validate_document(doc))
        item = stored(doc)
        if private:
            doc = bson.decode(item.raw, codec_options=CODEC)
            item = StoredDoc(doc, item.raw)
        coll = self.collection(db, name, create=True)
        assert coll is not None
        id_key = canon(doc["_id"])
        coll.check_unique(id_key, doc, replacing=False)
        coll.put(id_key, item)
        self._record("insert", db, name, {"_id": doc["_id"]}, item, None)
        return item

    def rewrite(
        self, coll: Collection, old: StoredDoc, new_doc: dict[str, Any], op: str
    ) -> StoredDoc | None:
        """Store ``new_doc`` in place of ``old`` (op: update|replace); None if nothing changed."""
        item = stored(validate_document(new_doc, inserting=False))
        if item.raw == old.raw:
            return None
        id_key = canon(old.doc["_id"])
        coll.check_unique(id_key, item.doc, replacing=True)
        coll.put(id_key, item)
        key = {"_id": old.doc["_id"]}
        if op == "update":
            self._record(
                "update", coll.db, coll.name, key, None, update_description(old.doc, item.doc)
            )
        else:
            self._record("replace", coll.db, coll.name, key, item, None)
        return item

    def delete(self, coll: Collection, item: StoredDoc) -> None:
        coll.remove(canon(item.doc["_id"]))
        self._record("delete", coll.db, coll.name, {"_id": item.doc["_id"]}, None, None)

    def lookup_id(self, db: str, name: str, doc_id: Any) -> StoredDoc | None:
        coll = self.collection(db, name)
        return None if coll is None else coll.docs.get(canon(doc_id))

    def drop(self, db: str, name: str) -> Collection | None:
        coll = self.collections.pop((db, name), None)
        if coll is not None:
            self._record("drop", db, name, None, None, None)
        return coll

    def rename(self, db: str, source: str, target: str, *, drop_target: bool) -> None:
        """Rename ``db.source`` to ``db.target`` (streams on either see rename + invalidate)."""
        coll = self.collections.get((db, source))
        if coll is None:
            raise CommandError(26, f"Source collection {db}.{source} does not exist")
        if (db, target) in self.collections:
            if not drop_target:
                raise CommandError(48, "target namespace exists")
            self.drop(db, target)
        del self.collections[(db, source)]
        coll.name = target
        self.collections[(db, target)] = coll
        self._record("rename", db, source, None, None, None, to=target)

    def drop_database(self, db: str) -> None:
        names = self.collection_names(db)
        for name in names:
            self.drop(db, name)
        if names:
            self._record("dropDatabase", db, None, None, None, None)

    # -- history ------------------------------------------------------------------------
    def _record(
        self,
        op: str,
        db: str,
        coll: str | None,
        key: dict[str, Any] | None,
        full: StoredDoc | None,
        description: dict[str, Any] | None,
        *,
        to: str | None = None,
    ) -> None:
        ts = self.clock.tick()
        pos = Position(ts.time, ts.inc, RANK_EVENT)
        entry = Entry(pos, time.time(), op, db, coll, key, full, description, to)
        self.history.append(entry)
        if self.history_limit is not None:
            self._trim()
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def noop(self) -> None:
        """Advance cluster time without a visible change (the primary's periodic no-op write)."""
        self.clock.tick()
        self._wake()

    def entries_from(self, pos: Position) -> Iterator[Entry]:
        """Entries at or after ``pos``'s cluster time, oldest first."""
        start = bisect.bisect_left(
            self.history, (pos.time, pos.inc), key=lambda e: (e.pos.time, e.pos.inc)
        )
        for index in range(start, len(self.history)):
            yield self.history[index]

    def has_entry_at(self, pos: Position) -> bool:
        index = bisect.bisect_left(
            self.history, (pos.time, pos.inc), key=lambda e: (e.pos.time, e.pos.inc)
        )
        return index < len(self.history) and (
            self.history[index].pos.time,
            self.history[index].pos.inc,
        ) == (
            pos.time,
            pos.inc,
        )

    def change_signal(self) -> asyncio.Event:
        """An event set at the next write (take it *before* scanning the history)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def forget_history(self) -> None:
        """Drop every entry: only positions at or after the current cluster time resume."""
        self.history.clear()
        self.floor = self.clock.high_water_mark()

    def set_history_limit(self, entries: int | None) -> None:
        """Keep at most ``entries`` history entries (``None``: unbounded)."""
        self.history_limit = entries
        self._trim()

    def _trim(self) -> None:
        limit = self.history_limit
        if limit is None or len(self.history) <= limit:
            return
        del self.history[: len(self.history) - limit]
        if self.history:
            self.floor = max(
                self.floor, Position(self.history[0].pos.time, self.history[0].pos.inc, RANK_START)
            )
        else:
            self.floor = self.clock.high_water_mark()


def _simple_equalities(query: dict[str, Any]) -> list[tuple[str, Any]] | None:
    """``[(field, value)]`` when ``query`` only tests top-level fields against strings or
    ObjectIds: the common lookup, served without the general matcher."""
    pairs = list(query.items())
    for key, value in pairs:
        if "." in key or key.startswith("$") or type(value) not in (str, ObjectId):
            return None
    return pairs


def _equal_fields(doc: dict[str, Any], pairs: list[tuple[str, Any]]) -> bool:
    for key, target in pairs:
        value = doc.get(key, MISSING)
        if type(value) is type(target):
            if value != target:
                return False
        elif isinstance(value, list):
            if not matches(doc, {key: target}):
                return False
        else:
            return False  # no other BSON type equals a string or an ObjectId
    return True


def _has_operator(value: dict[str, Any]) -> bool:
    return any(k.startswith("$") for k in value)
