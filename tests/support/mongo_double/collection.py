"""Collections: documents in natural order, their indexes, and the unique-key tables.

Why apart from the store: a collection only keeps its documents and indexes consistent
(a unique index is enforced on exact field values, optionally sparse or partial, and a
DuplicateKey error is shaped like the server's); the store above it owns cluster time and
history, so a change to one never needs the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import bson
from bson.binary import Binary

from .errors import CommandError
from .values import MISSING, canon, get_path, matches
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


class Collection:
    """Documents in natural (insertion) order plus the indexes declared on them."""

    def __init__(self, db: str, name: str) -> None:
        self.db = db
        self.name = name
        self.uuid = Binary(uuid.uuid4().bytes, 4)
        self.images = False  # changeStreamPreAndPostImages: record pre- and post-images
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
