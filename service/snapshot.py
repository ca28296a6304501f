"""The serving state of a replica's cache: key → config, plus the container index.

Why a module of its own: it is the one structure both the cache (which answers from it)
and the subscriber (which builds a fresh one on every reload and replays buffered
messages onto it before the swap) write to. Invariants: ``by_container`` is always exactly
the index of ``by_key`` on ``ingestion.landing_container``, and ``by_id`` maps each cached
document's ``_id`` to its key -- :meth:`Snapshot.put` and :meth:`Snapshot.remove` are the
only writers and keep all three in step. Since ``_id`` is unique in the collection, putting
a document whose ``_id`` is cached under another key removes that other key: the
document's key field changed, and the old entry must not linger.
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

    __slots__ = ("by_container", "by_id", "by_key")

    def __init__(self) -> None:
        self.by_key: dict[str, Doc] = {}
        self.by_container: dict[str, dict[str, Doc]] = {}
        self.by_id: dict[Hashable, str] = {}

    @classmethod
    def build(cls, docs: Iterable[Doc], *, key_field: str) -> tuple[Snapshot, int]:
        """A snapshot of ``docs`` and how many were skipped for lacking a string key."""
        snapshot, skipped = cls(), 0
        for doc in docs:
            key = key_of(doc, key_field)
            if key is not None:
                snapshot.put(key, doc)
            else:
                skipped += 1
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
