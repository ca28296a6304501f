"""The serving state of a replica's cache: key → config, plus the container index.

Why a module of its own: it is the one structure both the cache (which answers from it)
and the subscriber (which builds a fresh one on every reload and replays buffered
messages onto it before the swap) write to. Invariants: ``by_container`` is always exactly
the index of ``by_key`` on ``ingestion.landing_container``, and ``by_id`` maps each cached
document's ``_id`` to its key -- :meth:`Snapshot.put` and :meth:`Snapshot.remove` are the
only writers and keep all three in step. Since ``_id`` is unique in the collection, putting
a document whose ``_id`` is cached under another key removes that other key: the
document's key field changed, and the old entry must not linger.

Per-document versions: ``versions`` maps an ``_id`` to the exact cluster time ``(t, i)``
of the last change applied to it (deletes included, as tombstones), and ``floor`` is a
cluster time the whole snapshot is known to be at least as new as (a reload records the
majority read time taken just before it read the collection). :meth:`admits` says whether
a change of a given cluster time may still be applied: never one older than what the
snapshot already reflects for that document, so a replay after a failover, or a replayed
signed message, cannot move a config backwards.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from shared.documents import id_token, key_of

Doc = dict[str, Any]


def container_of(doc: Doc) -> str | None:
    """The document's ``ingestion.landing_container``, if it is a non-empty string."""
    ingestion = doc.get("ingestion")
    if isinstance(ingestion, dict):
        container = ingestion.get("landing_container")
        if isinstance(container, str) and container:
            return container
    return None


class Snapshot:
    """Key → document plus the container index; mutated in place only by its owner."""

    __slots__ = ("by_container", "by_id", "by_key", "floor", "key_versions", "versions")

    def __init__(self, *, floor: tuple[int, int] | None = None) -> None:
        self.by_key: dict[str, Doc] = {}
        self.by_container: dict[str, dict[str, Doc]] = {}
        self.by_id: dict[Hashable, str] = {}
        self.versions: dict[Hashable, tuple[int, int]] = {}
        self.key_versions: dict[str, tuple[int, int]] = {}
        self.floor = floor

    def admits(self, doc_id: Any, ct: tuple[int, int] | None) -> bool:
        """Whether a change of cluster time ``ct`` to ``doc_id`` is not older than ours.

        Changes without a cluster time (an older watcher) or without an ``_id`` are
        admitted. Equal times are admitted: a key change publishes a delete and an upsert
        of one event, and a duplicate carries the same state.
        """
        if ct is None or doc_id is None:
            return True
        known = self.versions.get(id_token(doc_id), self.floor)
        return known is None or ct >= known

    def admits_at(self, key: str | None, doc_id: Any, ct: tuple[int, int] | None) -> bool:
        """:meth:`admits`, and not older than what is known of ``key`` itself.

        A key can name several documents over time (deleted, then created again with a
        new ``_id``; a document whose key changed): the replay of an earlier state of the
        key -- another document, or none -- must not replace a later one.
        """
        if not self.admits(doc_id, ct):
            return False
        if ct is None or key is None:
            return True
        known = self.key_versions.get(key, self.floor)
        return known is None or ct >= known

    def stamp_key(self, key: str | None, ct: tuple[int, int] | None) -> None:
        """Record that ``key`` is known as of cluster time ``ct`` (a change or a read)."""
        if ct is None or key is None:
            return
        known = self.key_versions.get(key)
        if known is None or ct > known:
            self.key_versions[key] = ct

    def stamp(self, doc_id: Any, ct: tuple[int, int] | None) -> None:
        """Record that the change of cluster time ``ct`` to ``doc_id`` was applied."""
        if ct is None or doc_id is None:
            return
        ident = id_token(doc_id)
        known = self.versions.get(ident)
        if known is None or ct > known:
            self.versions[ident] = ct

    @classmethod
    def build(
        cls, docs: Iterable[Doc], *, key_field: str, floor: tuple[int, int] | None = None
    ) -> tuple[Snapshot, int]:
        """A snapshot of ``docs`` (read at ``floor`` or later) and how many lacked a key.

        The whole collection goes through here on every warm-up and reload, so the common
        case -- a key and an ``_id`` not seen yet in this load -- fills the three maps
        inline (no :meth:`put` call, no lookup of an old entry to unindex); a repeated key
        or ``_id`` takes :meth:`put`, which keeps the maps in step. Same result either way.
        """
        snapshot, skipped = cls(floor=floor), 0
        by_key, by_id, by_container = snapshot.by_key, snapshot.by_id, snapshot.by_container
        dotted = "." in key_field
        for doc in docs:
            if dotted:
                key = key_of(doc, key_field)
            else:
                key = doc.get(key_field)
                if not isinstance(key, str) or not key:
                    key = None
            if key is None:
                skipped += 1
                continue
            if key in by_key:
                snapshot.put(key, doc)
                continue
            if "_id" in doc:
                ident = id_token(doc["_id"])
                if ident in by_id:
                    snapshot.put(key, doc)
                    continue
                by_id[ident] = key
            by_key[key] = doc
            ingestion = doc.get("ingestion")
            if isinstance(ingestion, dict):
                container = ingestion.get("landing_container")
                if isinstance(container, str) and container:
                    bucket = by_container.get(container)
                    if bucket is None:
                        by_container[container] = {key: doc}
                    else:
                        bucket[key] = doc
        return snapshot, skipped

    def put(self, key: str, doc: Doc) -> None:
        """Insert or replace ``key``, moving it between container buckets if needed."""
        old = self.by_key.get(key)
        if old is not None:
            self._unindex(key, old)
        if "_id" in doc:
            ident = id_token(doc["_id"])
            other = self.by_id.get(ident)
            if other is not None and other != key:
                self.remove(other)  # same document, new key: the old entry is stale
            self.by_id[ident] = key
        self.by_key[key] = doc
        container = container_of(doc)
        if container is not None:
            self.by_container.setdefault(container, {})[key] = doc

    def remove(self, key: str) -> bool:
        """Drop ``key``; True if it was there."""
        old = self.by_key.pop(key, None)
        if old is None:
            return False
        self._unindex(key, old)
        return True

    def remove_document(self, key: str | None, doc_id: Any) -> str | None:
        """Drop the document with this ``_id`` wherever it is cached; the key it had.

        A delete that names both a key and an ``_id`` removes the *document*: if ``key``
        now holds another document (the key was reused after a rename the watcher did not
        see), that entry stays. Only a document without an ``_id`` at ``key`` is removed
        by key alone.
        """
        holder = self.key_for_id(doc_id)
        if holder is not None:
            self.remove(holder)
            return holder
        if key is not None:
            doc = self.by_key.get(key)
            if doc is not None and "_id" not in doc:
                self.remove(key)
                return key
        return None

    def key_for_id(self, doc_id: Any) -> str | None:
        """The key under which the document with this ``_id`` is cached, if it is."""
        return self.by_id.get(id_token(doc_id))

    def _unindex(self, key: str, doc: Doc) -> None:
        if "_id" in doc:
            ident = id_token(doc["_id"])
            if self.by_id.get(ident) == key:
                del self.by_id[ident]
        container = container_of(doc)
        if container is None:
            return
        bucket = self.by_container.get(container)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self.by_container[container]
