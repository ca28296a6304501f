"""Applying one change message to the cache, or to a snapshot being built -- never backwards.

Why a module of its own: the subscriber decides *whether* a message is next in sequence
(:mod:`service.sequencing`); this module decides what the change does to the documents,
and keeps the per-document ordering: a change whose exact cluster time is older than what
the target already reflects for that ``_id`` -- or for the other document now holding the
same key, a later incarnation of it (:meth:`Snapshot.admits_at`) -- is counted and
skipped, so the replay of a historical insert after a failover, or a replayed signed
message, never moves a config backwards. The sequence still advances past it.

Targets: the serving cache (:class:`ConfigCache`, which also tracks races with reads in
flight) or a fresh :class:`Snapshot` a reload is replaying buffered messages onto.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog

from service.caching import ConfigCache
from service.snapshot import Snapshot
from service.storing import ConfigStore
from shared.messages import Message

log = structlog.get_logger("service.applying")
Doc = dict[str, Any]


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a message is decoded or a batch applied.

    Never around an await (a refetch, a slow MongoDB): only around synchronous work. A
    batch allocates thousands of objects at once (its parsed JSON, one document and one
    :class:`Message` per change) and most of them join the cache for good; left to run,
    the collector would start many collections in the middle, each walking the young
    documents again (measured: about a quarter of a replica's CPU per change in a burst).
    Held off, the objects are counted as usual and the next allocation after it starts at
    most the collection they are due. Never left off: restored on the way out, whatever
    happens, and a no-op when the collector was already off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def settle_heap() -> None:
    """Collect once, then exempt everything alive now from future collections (``gc.freeze``).

    Only in a process that opted in (:func:`settle_heap_after_first_load`: the replica's
    entry point; a test process hosting many short-lived replicas does not). Called when
    the first load is installed: what exists then -- modules, the app, clients,
    the warmed cache -- lives as long as the process, yet every full collection walked it
    again (measured: about a tenth of a replica's CPU under steady ingestion, where
    requests' short-lived objects keep triggering collections). Frozen objects are still
    freed by reference counting when dropped (documents hold no cycles); only a cycle
    among objects alive at this moment that becomes garbage later is never collected, a
    bounded one-time cost, which is why this runs once per process, not per reload.
    """
    global _settle_pending
    if not _settle_pending:
        return
    _settle_pending = False
    gc.collect()
    gc.freeze()


def settle_heap_after_first_load() -> None:
    """Opt this process in to :func:`settle_heap` (once, after its first load)."""
    global _settle_pending
    _settle_pending = True


_settle_pending = False


class Applier:
    """Applies upserts, deletes and refetches; counts what the cluster-time rule skipped."""

    def __init__(self, *, cache: ConfigCache, store: ConfigStore) -> None:
        self._cache = cache
        self._store = store
        #: Changes skipped because the target already held a newer version.
        self.older_skipped = 0

    def _admitted(self, message: Message, target: Snapshot) -> bool:
        key = message.key if message.kind == "upsert" else None
        if target.admits_at(key, message.doc_id, message.ct):
            return True
        self.older_skipped += 1
        log.info(
            "change older than the cached version skipped",
            seq=message.seq,
            key=message.key,
            ct=message.ct,
        )
        return False

    async def apply(self, message: Message, snapshot: Snapshot | None) -> None:
        """Apply an upsert or delete to ``snapshot`` (a reload) or the serving cache."""
        await self.apply_batch((message,), snapshot)

    async def apply_batch(self, messages: Sequence[Message], snapshot: Snapshot | None) -> None:
        """Apply upserts and deletes in order, all in one step no lookup can see half of.

        The only awaits are the reads of key-only (``refetch``) changes, and they all
        happen first: one majority read time (the floor that stamps what they read) and
        one read per such key. Then every change is applied in order without yielding to
        the event loop, so a lookup sees the cache before the batch or after it, never in
        between. A refetched document is the state *after* its read, newer than anything
        in the batch; later changes of the same key in the batch are older than the read
        floor and skipped by the cluster-time rule, earlier ones are overwritten by it.
        """
        fetched: dict[str, Doc | None] = {}
        floor: tuple[int, int] | None = None
        keys = {m.key for m in messages if m.kind == "upsert" and m.refetch and m.key}
        if keys:
            floor = await self._store.read_time()
            for key in sorted(keys):
                fetched[key] = await self._store.find_by_key(key)
        target = self._cache.snapshot if snapshot is None else snapshot  # after the reads
        with collection_paused():
            for message in messages:
                self._apply_one(message, snapshot, target, fetched, floor)

    def _apply_one(
        self,
        message: Message,
        snapshot: Snapshot | None,
        target: Snapshot,
        fetched: dict[str, Doc | None],
        floor: tuple[int, int] | None,
    ) -> None:
        if not self._admitted(message, target):
            return
        key, doc_id = message.key, message.doc_id
        if message.kind == "delete":
            held_at = target.key_for_id(doc_id) if doc_id is not None else key
            if snapshot is None:
                self._cache.apply_delete(key, doc_id)
            elif doc_id is not None:
                snapshot.remove_document(key, doc_id)
            elif key is not None:
                snapshot.remove(key)
            target.stamp(doc_id, message.ct)
            target.stamp_key(held_at or key, message.ct)
            return
        assert key is not None  # Message guarantees a key for upserts
        doc, reason, ct = message.doc, "upsert", message.ct
        if message.refetch:
            # The read answers with the state *now*, newer than the message: stamp it with a
            # majority time taken before the read, so older replayed changes cannot undo it.
            doc, reason = fetched.get(key), "refetch"
            ct = floor if ct is None or (floor is not None and floor > ct) else ct
        if snapshot is not None:
            if doc is None:
                snapshot.remove(key)
            else:
                snapshot.put(key, doc)
        elif doc is None:
            self._cache.apply_delete(key)
        else:
            self._cache.apply_upsert(key, doc, reason=reason)
        # The message's own document is known as of its cluster time; what a refetch read
        # (possibly another document now holding the key) as of the read's floor.
        target.stamp(doc_id, message.ct)
        target.stamp_key(key, ct)
        if doc is not None and "_id" in doc:
            target.stamp(doc["_id"], ct)

    def apply_now(self, message: Message) -> None:
        """Apply a carried change to the serving cache at once (no refetch, no await).

        Used while a reload runs or waits: the serving snapshot keeps receiving changes
        newer than what it holds; the checked replay onto the new snapshot follows.
        """
        target = self._cache.snapshot
        if message.kind not in ("upsert", "delete") or not self._admitted(message, target):
            return
        key = message.key
        if message.kind == "delete":
            if message.doc_id is not None:
                key = target.key_for_id(message.doc_id) or key
            self._cache.apply_delete(message.key, message.doc_id)
        elif message.doc is not None and message.key is not None:
            self._cache.apply_upsert(message.key, message.doc)
        else:
            return
        target.stamp(message.doc_id, message.ct)
        target.stamp_key(key, message.ct)
