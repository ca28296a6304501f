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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bson
from bson.binary import Binary
from bson.objectid import ObjectId

from .collection import Collection, StoredDoc, stored
from .describing import update_description
from .errors import CommandError
from .tokens import RANK_EVENT, RANK_START, Clock, Position
from .updates import id_first, validate_document
from .values import MISSING, canon, check_query, matches
from .wire import CODEC


@dataclass(slots=True)
class Entry:
    """One history entry (an oplog entry): a change to one document or namespace."""

    pos: Position
    wall: float  # seconds since the epoch; rendered as a BSON date with millisecond precision
    op: str  # insert | update | replace | delete | drop | rename | dropDatabase, or one of
    # the DDL entries only expanded streams show: create | createIndexes | dropIndexes | modify
    db: str
    coll: str | None
    key: dict[str, Any] | None
    full: StoredDoc | None
    description: dict[str, Any] | None
    to: str | None = None  # rename: the new collection name (same database)
    uuid: Binary | None = None  # the collection's UUID (collectionUUID of expanded events)
    info: dict[str, Any] | None = None  # operationDescription of an expanded (DDL) event
    pre: StoredDoc | None = None  # pre-image (changeStreamPreAndPostImages enabled)
    post: StoredDoc | None = None  # post-image of an update (likewise)


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
            info = {"idIndex": dict(coll.indexes["_id_"])}
            self._record("create", db, name, None, None, None, info=info)
        return coll

    def modify(self, coll: Collection, images: bool | None) -> None:
        """collMod: maybe turn pre-/post-images on or off; a ``modify`` entry either way."""
        info: dict[str, Any] = {}
        if images is not None:
            coll.images = images
            info["changeStreamPreAndPostImages"] = {"enabled": images}
        self._record("modify", coll.db, coll.name, None, None, None, info=info)

    def indexes_changed(self, coll: Collection, op: str, specs: list[dict[str, Any]]) -> None:
        """Record a createIndexes/dropIndexes entry (seen by expanded streams only)."""
        if specs:
            self._record(op, coll.db, coll.name, None, None, None, info={"indexes": specs})

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
        pre = old if coll.images else None
        if op == "update":
            description = update_description(old.doc, item.doc)
            post = item if coll.images else None
            self._record("update", coll.db, coll.name, key, None, description, pre=pre, post=post)
        else:
            self._record("replace", coll.db, coll.name, key, item, None, pre=pre)
        return item

    def delete(self, coll: Collection, item: StoredDoc) -> None:
        coll.remove(canon(item.doc["_id"]))
        pre = item if coll.images else None
        self._record("delete", coll.db, coll.name, {"_id": item.doc["_id"]}, None, None, pre=pre)

    def lookup_id(self, db: str, name: str, doc_id: Any) -> StoredDoc | None:
        coll = self.collection(db, name)
        return None if coll is None else coll.docs.get(canon(doc_id))

    def drop(self, db: str, name: str) -> Collection | None:
        coll = self.collections.pop((db, name), None)
        if coll is not None:
            self._record("drop", db, name, None, None, None, uuid=coll.uuid)
        return coll

    def rename(self, db: str, source: str, target: str, *, drop_target: bool) -> None:
        """Rename ``db.source`` to ``db.target`` (streams on either see rename + invalidate)."""
        coll = self.collections.get((db, source))
        if coll is None:
            raise CommandError(26, f"Source collection {db}.{source} does not exist")
        info: dict[str, Any] = {"to": {"db": db, "coll": target}}
        if (db, target) in self.collections:
            if not drop_target:
                raise CommandError(48, "target namespace exists")
            dropped = self.drop(db, target)
            assert dropped is not None
            info["dropTarget"] = dropped.uuid
        del self.collections[(db, source)]
        coll.name = target
        self.collections[(db, target)] = coll
        self._record("rename", db, source, None, None, None, to=target, uuid=coll.uuid, info=info)

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
        uuid: Binary | None = None,
        info: dict[str, Any] | None = None,
        pre: StoredDoc | None = None,
        post: StoredDoc | None = None,
    ) -> None:
        ts = self.clock.tick()
        pos = Position(ts.time, ts.inc, RANK_EVENT)
        if uuid is None and coll is not None and (db, coll) in self.collections:
            uuid = self.collections[(db, coll)].uuid
        entry = Entry(pos, time.time(), op, db, coll, key, full, description, to, uuid, info)
        entry.pre, entry.post = pre, post
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
