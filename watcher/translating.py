"""Turning a change event into the messages it means (pure, apart from the key map).

Invariants:

* A delete always names its key. The delete event carries only ``documentKey._id``, so
  :class:`KeyMap` remembers ``_id → key`` from every post-image and from a scan when a term
  starts; if the key is still unknown the result is a ``resync`` (reason
  ``unknown_delete_key``), never silence.
* A document whose key changed is deleted under its old key before it is upserted under
  the new one, so no replica keeps a stale entry.
* insert/update/replace carry the post-image (``fullDocument``, looked up by the server);
  an update whose lookup found nothing means the document is gone: ``delete``.

``cluster_time`` in messages is :func:`cluster_seconds` of the event's ``clusterTime``:
``Timestamp.time + Timestamp.inc × 1e-6``. It is for humans and lag, not an ordering key.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.timestamp import Timestamp

from shared.messages import Kind
from watcher.reporting import WatcherStats

log = structlog.get_logger("watcher.translating")

#: Change kinds that carry (or delete) one document.
DOCUMENT_OPS: Final = frozenset({"insert", "update", "replace"})


def cluster_seconds(value: object) -> float | None:
    """A BSON ``Timestamp`` as float seconds (``time + inc × 1e-6``); None otherwise."""
    if isinstance(value, Timestamp):
        return value.time + value.inc / 1_000_000
    return None


@dataclass(frozen=True, slots=True)
class Draft:
    """A message before the publisher stamps epoch, time and (in Redis) seq."""

    kind: Kind
    op: str | None
    key: str | None = None
    doc: dict[str, Any] | None = None
    cluster_time: float | None = None
    reason: str | None = None


def resync(reason: str, *, op: str | None = None) -> Draft:
    """A ``resync`` draft (replicas reload everything)."""
    return Draft(kind="resync", op=op, reason=reason)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, Hashable) and not isinstance(value, Mapping | list):
        return ("v", type(value).__name__, value)
    return ("ejson", json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS))


def key_of(doc: Mapping[str, Any], key_field: str) -> str | None:
    """The document's key (``key_field``, dotted paths allowed) if it is a non-empty string."""
    value: Any = doc
    for part in key_field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) and value else None


class KeyMap:
    """``_id → key`` for every document this watcher has seen, so deletes can name keys."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, doc_id: Any) -> str | None:
        """The last key seen for ``doc_id``."""
        return self._keys.get(_hashable(doc_id))

    def learn(self, doc_id: Any, key: str) -> None:
        """Remember ``doc_id``'s key."""
        self._keys[_hashable(doc_id)] = key

    def forget(self, doc_id: Any) -> str | None:
        """Drop ``doc_id``; its last key, if known."""
        return self._keys.pop(_hashable(doc_id), None)


class Translator:
    """Change event → drafts (usually one; two when a document's key changed)."""

    def __init__(self, *, key_field: str, keys: KeyMap, stats: WatcherStats) -> None:
        self._key_field = key_field
        self.keys = keys
        self._stats = stats

    def drafts(self, change: Mapping[str, Any]) -> list[Draft]:
        """Drafts for ``change``; restart events are the follower's job, not this one's."""
        op = str(change.get("operationType"))
        cluster_time = cluster_seconds(change.get("clusterTime"))
        doc_key = change.get("documentKey")
        has_id = isinstance(doc_key, Mapping) and "_id" in doc_key
        doc_id = doc_key["_id"] if isinstance(doc_key, Mapping) and has_id else None
        if op not in DOCUMENT_OPS and op != "delete":
            return self._skip(op, "unhandled_op")
        if not has_id:
            return self._skip(op, "no_document_key")
        doc = change.get("fullDocument")
        if op == "delete" or doc is None:
            # delete, or an update/replace whose post-image lookup found nothing: gone.
            key = self._forget(doc_id) if op == "delete" else self._known(doc_id)
            if key is None:
                log.warning("delete of a document whose key is unknown; resync", op=op)
                return [Draft(kind="resync", op=op, reason="unknown_delete_key")]
            return [Draft(kind="delete", op=op, key=key, cluster_time=cluster_time)]
        if not isinstance(doc, Mapping):
            return self._skip(op, "bad_full_document")
        key = key_of(doc, self._key_field)
        previous = self._known(doc_id)
        out: list[Draft] = []
        if previous is not None and previous != key:
            out.append(Draft(kind="delete", op=op, key=previous, cluster_time=cluster_time))
        if key is None:
            self.keys.forget(doc_id)
            self._skip(op, "no_key")
            return out
        self.keys.learn(doc_id, key)
        out.append(Draft(kind="upsert", op=op, key=key, doc=dict(doc), cluster_time=cluster_time))
        return out

    def _known(self, doc_id: Any) -> str | None:
        if self._key_field == "_id":
            return doc_id if isinstance(doc_id, str) and doc_id else None
        return self.keys.get(doc_id)

    def _forget(self, doc_id: Any) -> str | None:
        known = self._known(doc_id)
        self.keys.forget(doc_id)
        return known

    def _skip(self, op: str, reason: str) -> list[Draft]:
        self._stats.skipped[reason] += 1
        log.warning(
            "change event not published",
            op=op,
            reason=reason,
            key_field=self._key_field,
            hint="documents need a non-empty string key field",
        )
        return []
