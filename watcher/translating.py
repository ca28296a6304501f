"""Turning a change event into the messages it means (pure, apart from the key map).

Invariants:

* Every upsert and delete carries the document's ``_id``; replicas index ``_id → key``.
  The delete event carries only ``documentKey._id``: :class:`KeyMap` remembers
  ``_id → key`` from every post-image and from a scan when a term starts, to name the key
  when it can (logs, operators); when it cannot, the delete names only the ``_id`` and the
  replicas resolve it -- never silence, and no resync for it.
* A document whose key changed is deleted under its old key (when known) before it is
  upserted under the new one; replicas also drop any other key cached for the same
  ``_id``, so a key change replayed after a failover (when this map was learned from a
  scan taken after the change) leaves no stale entry either.
* A document that lost its key is deleted by ``_id``.
* insert/update/replace carry the post-image (``fullDocument``, looked up by the server);
  an update whose lookup found nothing means the document is gone: ``delete``.
* A *poison document* -- an event the source could not decode (marked
  :data:`UNDECODABLE`) -- is never skipped and never stops the stream: it is logged with
  its ``_id``, counted, and published as a delete by ``_id`` (with the key when known).
  Replicas decode documents with the same codec, so one they were asked to refetch
  would fail for them too (a failed read, then a full reload, on every replica); a
  delete by ``_id`` makes each drop whatever it holds for that document, wherever it is
  cached, and its next lookup reads MongoDB -- never the version before the change.
  An undecodable event that names no ``_id`` is a ``resync`` (reason ``poison_event``).

``ct`` in messages is the event's exact ``clusterTime`` as ``(time, inc)``
(:func:`cluster_ts`): replicas order versions of one document by it. ``cluster_time`` is
:func:`cluster_seconds` of the same Timestamp (``time + inc × 1e-6``), for humans and lag.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from bson.timestamp import Timestamp

from shared.documents import id_token, key_of
from shared.messages import Kind
from watcher.reporting import WatcherStats

log = structlog.get_logger("watcher.translating")

#: Change kinds that carry (or delete) one document.
DOCUMENT_OPS: Final = frozenset({"insert", "update", "replace"})
#: Set (to what went wrong) in a change event the source could not decode in full.
UNDECODABLE: Final = "scc.undecodable"


def cluster_seconds(value: object) -> float | None:
    """A BSON ``Timestamp`` as float seconds (``time + inc × 1e-6``); None otherwise."""
    if isinstance(value, Timestamp):
        return value.time + value.inc / 1_000_000
    return None


def cluster_ts(value: object) -> tuple[int, int] | None:
    """A BSON ``Timestamp`` as the exact ``(time, inc)`` pair; None otherwise."""
    if isinstance(value, Timestamp):
        return (value.time, value.inc)
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
    doc_id: Any = None
    ct: tuple[int, int] | None = None


def resync(reason: str, *, op: str | None = None) -> Draft:
    """A ``resync`` draft (replicas reload everything)."""
    return Draft(kind="resync", op=op, reason=reason)


class KeyMap:
    """``_id → key`` for every document this watcher has seen, so deletes can name keys."""

    def __init__(self) -> None:
        self._keys: dict[Hashable, str] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, doc_id: Any) -> str | None:
        """The last key seen for ``doc_id``."""
        return self._keys.get(id_token(doc_id))

    def learn(self, doc_id: Any, key: str) -> None:
        """Remember ``doc_id``'s key."""
        self._keys[id_token(doc_id)] = key

    def forget(self, doc_id: Any) -> str | None:
        """Drop ``doc_id``; its last key, if known."""
        return self._keys.pop(id_token(doc_id), None)


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
        ct = cluster_ts(change.get("clusterTime"))
        doc_key = change.get("documentKey")
        has_id = isinstance(doc_key, Mapping) and "_id" in doc_key
        doc_id = doc_key["_id"] if isinstance(doc_key, Mapping) and has_id else None
        if UNDECODABLE in change:
            error = str(change[UNDECODABLE])
            return self._poison(op, doc_id if has_id else None, error, cluster_time)
        if op not in DOCUMENT_OPS and op != "delete":
            return self._skip(op, "unhandled_op")
        if not has_id:
            return self._skip(op, "no_document_key")
        doc = change.get("fullDocument")
        if op == "delete" or doc is None:
            # delete, or an update/replace whose post-image lookup found nothing: gone.
            key = self._forget(doc_id) if op == "delete" else self._known(doc_id)
            return [Draft("delete", op, key=key, cluster_time=cluster_time, ct=ct, doc_id=doc_id)]
        if not isinstance(doc, Mapping):
            return self._skip(op, "bad_full_document")
        key = key_of(doc, self._key_field)
        previous = self._known(doc_id)
        out: list[Draft] = []
        if previous is not None and previous != key:
            out.append(
                Draft("delete", op, key=previous, cluster_time=cluster_time, ct=ct, doc_id=doc_id)
            )
        if key is None:
            self.keys.forget(doc_id)
            self._skip(op, "no_key")
            if previous is None:  # the replicas may still hold it under its old key
                out.append(Draft("delete", op, cluster_time=cluster_time, ct=ct, doc_id=doc_id))
            return out
        self.keys.learn(doc_id, key)
        out.append(
            Draft(
                "upsert",
                op,
                key=key,
                doc=dict(doc),
                cluster_time=cluster_time,
                ct=ct,
                doc_id=doc_id,
            )
        )
        return out

    def _poison(self, op: str, doc_id: Any, error: str, cluster_time: float | None) -> list[Draft]:
        self._stats.record_poison("undecodable", doc_id, error)
        if doc_id is None:
            log.error(
                "change event undecodable and names no document; publishing resync",
                op=op,
                error=error,
            )
            return [resync("poison_event", op=op)]
        key = self._known(doc_id)
        log.error(
            "poison document: change event undecodable; published as a delete by _id",
            op=op,
            _id=repr(doc_id)[:200],
            key=key,
            error=error,
            hint="replicas drop it and read MongoDB on the next lookup; fix the document",
        )
        return [Draft("delete", op, key=key, cluster_time=cluster_time, doc_id=doc_id)]

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
