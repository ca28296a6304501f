"""The replica's in-memory copy of ``source_configs``: O(1) lookups that never lie for long.

Why it exists: every blob event needs its source config, and the hot path must be a
dict read, not a MongoDB round trip. The subscriber (:mod:`service.subscribing`) feeds
it messages in sequence order and swaps in whole reloads; this module only answers.

Invariants it keeps:

* The serving state is one :class:`~service.snapshot.Snapshot` (key map + container index),
  replaced by a single assignment on reload: readers never see an empty, half-built or
  ``None`` map.
* A miss reads MongoDB once per key or container however many callers wait for it
  (single-flight: one task, every caller awaits it). Its result is installed only if no
  message for that key was applied, and no reload swapped in, while it ran (per-key
  change tick), so a fetch racing a newer message never overwrites it.
* "Unknown" is remembered for ``negative_ttl_s`` at most, and the next message for that
  key (or that container) forgets it at once: a config created a millisecond before its
  first event is still found.
* While the message stream is inactive and the cache is older than ``max_staleness_s``,
  lookups read MongoDB (single-flight), so no answer is older than that.

Counters are plain integers read by observable instruments (:mod:`service.metrics`).
Returned documents are the cached objects themselves: callers must not mutate them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from service.snapshot import Doc, Snapshot, container_of
from service.storing import ConfigStore
from shared.documents import key_of

_T = TypeVar("_T")

#: Why an entry changed; bounded, so it labels ``source_config_cache_invalidations_total``.
INVALIDATION_REASONS: Final = ("upsert", "refetch", "delete", "reload", "read_through")
#: Above this many remembered "unknown" answers, expired ones are swept before adding.
_NEGATIVE_SWEEP_AT: Final = 50_000


class ConfigCache:
    """Lookups by key and by container over a swappable :class:`Snapshot`."""

    def __init__(
        self,
        *,
        store: ConfigStore,
        key_field: str,
        negative_ttl_s: float,
        max_staleness_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._key_field = key_field
        self._negative_ttl_s = negative_ttl_s
        self._max_staleness_s = max_staleness_s
        self._clock = clock
        self._snap = Snapshot()
        self._warmed = False
        self._stream_active = False
        # The hot path's view: the serving key map while the stream is live and the cache
        # warm, else an empty dict (so peek() needs one attribute read and one dict read).
        self._live_by_key: dict[str, Doc] = {}
        self._fresh_at: float | None = None
        # Plain counters, read by observable instruments.
        self.hits = 0
        self.misses = 0
        self.store_reads = 0
        self.invalidations: dict[str, int] = dict.fromkeys(INVALIDATION_REASONS, 0)
        # key/container → monotonic expiry of an "unknown" answer.
        self._negative_keys: dict[str, float] = {}
        self._negative_containers: dict[str, float] = {}
        # key/container → when MongoDB last confirmed it (only consulted while untrusted).
        self._verified_keys: dict[str, float] = {}
        self._verified_containers: dict[str, float] = {}
        self._key_flights: dict[str, asyncio.Task[Doc | None]] = {}
        self._container_flights: dict[str, asyncio.Task[list[Doc]]] = {}
        self._all_flight: dict[str, asyncio.Task[list[Doc]]] = {}
        # Change ticks: a fetch that started at tick t loses to any change with tick > t.
        self._tick = 0
        self._reload_tick = 0
        self._changed: dict[str, int] = {}  # recorded only while a fetch is in flight
        self._in_flight = 0

    # ----------------------------------------------------------------- state
    @property
    def warmed(self) -> bool:
        """True once a full load has been installed."""
        return self._warmed

    @property
    def size(self) -> int:
        """Number of cached documents."""
        return len(self._snap.by_key)

    @property
    def snapshot(self) -> Snapshot:
        """The serving snapshot (the subscriber applies best-effort changes during a reload)."""
        return self._snap

    def age_seconds(self) -> float | None:
        """Seconds since the cache was last known current (load or in-order message)."""
        return None if self._fresh_at is None else max(0.0, self._clock() - self._fresh_at)

    def set_stream_active(self, active: bool) -> None:
        """Whether messages and heartbeats are arriving (the subscriber decides)."""
        self._stream_active = active
        self._refresh_live_view()

    def _refresh_live_view(self) -> None:
        self._live_by_key = self._snap.by_key if self._stream_active and self._warmed else {}

    @property
    def max_staleness_s(self) -> float:
        """How old the cache may be before lookups read MongoDB (``SCC_MAX_STALENESS_S``)."""
        return self._max_staleness_s

    def mark_fresh(self, behind_s: float = 0.0) -> None:
        """The stream confirmed nothing was missed: the cache is current as of ``behind_s`` ago."""
        self._fresh_at = self._clock() - max(0.0, behind_s)

    def _trusted(self) -> bool:
        if self._stream_active and self._warmed:
            return True
        fresh_at = self._fresh_at
        return fresh_at is not None and self._clock() - fresh_at < self._max_staleness_s

    def _still_verified(self, verified: dict[str, float], name: str) -> bool:
        at = verified.get(name)
        return at is not None and self._clock() - at < self._max_staleness_s

    def _still_negative(self, negative: dict[str, float], name: str) -> bool:
        until = negative.get(name)
        return until is not None and until > self._clock()

    # ---------------------------------------------------------------- lookups
    def peek(self, source_id: str) -> Doc | None:
        """The synchronous hot path: the cached config on a trusted hit, else ``None``.

        ``None`` means "not answerable from memory alone" (absent, or the stream is not
        live), never "unknown": the caller then awaits :meth:`get_config_by_source_id`.
        One attribute read, one dict read and a counter -- no clock, no coroutine.
        """
        doc = self._live_by_key.get(source_id)
        if doc is not None:
            self.hits += 1
        return doc

    def peek_container(self, container: str) -> list[Doc] | None:
        """:meth:`peek` for a container: its configs on a trusted hit, else ``None``.

        ``None`` means "not answerable from memory alone" (no config cached for it, or the
        stream is not live): the caller then awaits :meth:`configs_for_container`.
        """
        if self._live_by_key:  # the stream is live and the cache warmed
            bucket = self._snap.by_container.get(container)
            if bucket:
                self.hits += 1
                return list(bucket.values())
        return None

    async def get_config_by_source_id(self, source_id: str) -> Doc | None:
        """The config for ``source_id``, or ``None`` once MongoDB confirmed it is unknown."""
        hit = self.peek(source_id)
        if hit is not None:
            return hit
        doc = self._snap.by_key.get(source_id)
        if doc is not None:
            if self._trusted() or self._still_verified(self._verified_keys, source_id):
                self.hits += 1
                return doc
        elif self._still_negative(self._negative_keys, source_id):
            self.misses += 1
            return None
        self.misses += 1
        return await self._single_flight(self._key_flights, source_id, self._fetch_key, "key")

    async def configs_for_container(self, container: str) -> list[Doc]:
        """Every config landing in ``container`` (empty once MongoDB confirmed none)."""
        bucket = self._snap.by_container.get(container)
        if bucket:
            if self._trusted() or self._still_verified(self._verified_containers, container):
                self.hits += 1
                return list(bucket.values())
        elif self._still_negative(self._negative_containers, container):
            self.misses += 1
            return []
        self.misses += 1
        return await self._single_flight(
            self._container_flights, container, self._fetch_container, "container"
        )

    async def get_all_configs(self) -> list[Doc]:
        """Every config: the cache's view, or one MongoDB read while it is too stale."""
        if self._trusted():
            return list(self._snap.by_key.values())
        return await self._single_flight(self._all_flight, "*", self._fetch_all, "all")

    # ------------------------------------------------------ changes (subscriber)
    def apply_upsert(self, key: str, doc: Doc, *, reason: str = "upsert") -> None:
        """A message says ``key`` now is ``doc`` (and no longer any other key with its _id)."""
        if self._put(key, doc):
            self.invalidations["delete"] += 1
        self.invalidations[reason] += 1

    def _put(self, key: str, doc: Doc) -> bool:
        """Cache ``doc`` at ``key`` as a change every read in flight must respect.

        True when another key held the same ``_id`` (``put`` drops it: the key changed).
        """
        self._note_change(key)
        moved = False
        if "_id" in doc:
            previous = self._snap.key_for_id(doc["_id"])
            if previous is not None and previous != key:
                self._note_change(previous)  # reads in flight must not revive it
                moved = True
        self._snap.put(key, doc)
        container = container_of(doc)
        if container is not None:
            self._negative_containers.pop(container, None)
        return moved

    def apply_delete(self, key: str | None, doc_id: object = None) -> None:
        """A message says a document is gone: by ``_id`` when given, else by ``key``.

        With an ``_id`` the document is removed wherever it is cached, and an entry at
        ``key`` that holds another document is left alone (see
        :meth:`Snapshot.remove_document`).
        """
        if doc_id is None:
            if key is None:
                raise ValueError("a delete needs a key or a document _id")
            self._note_change(key)
            self._snap.remove(key)
        else:
            holder = self._snap.key_for_id(doc_id)
            for name in (key, holder):
                if name is not None:
                    self._note_change(name)
            if self._snap.remove_document(key, doc_id) is None and self._in_flight:
                # Not cached, but a miss read running now may be fetching it under a key
                # we cannot name: let every read in flight answer without installing.
                self._tick += 1
                self._reload_tick = self._tick
        self.invalidations["delete"] += 1

    def install(self, snapshot: Snapshot, *, fresh_at: float) -> None:
        """Serve ``snapshot`` from now on (one assignment); forget every remembered answer."""
        self._tick += 1
        self._reload_tick = self._tick
        self._snap = snapshot
        self._negative_keys = {}
        self._negative_containers = {}
        self._verified_keys = {}
        self._verified_containers = {}
        self._fresh_at = fresh_at
        self._warmed = True
        self._refresh_live_view()
        self.invalidations["reload"] += 1

    def _note_change(self, key: str) -> None:
        self._tick += 1
        if self._in_flight:
            self._changed[key] = self._tick
        self._negative_keys.pop(key, None)

    # ------------------------------------------------------------ the miss path
    async def _single_flight(
        self,
        flights: dict[str, asyncio.Task[_T]],
        name: str,
        fetch: Callable[[str], Coroutine[Any, Any, _T]],
        kind: str,
    ) -> _T:
        task = flights.get(name)
        if task is None:
            task = asyncio.create_task(
                self._flight(flights, name, fetch), name=f"scc-cache-fetch-{kind}:{name}"
            )
            task.add_done_callback(_retrieve)
            flights[name] = task
        # shield: a caller that goes away does not cancel the read the others wait for.
        return await asyncio.shield(task)

    async def _flight(
        self,
        flights: dict[str, asyncio.Task[_T]],
        name: str,
        fetch: Callable[[str], Coroutine[Any, Any, _T]],
    ) -> _T:
        self._in_flight += 1
        self.store_reads += 1
        try:
            return await fetch(name)
        finally:
            flights.pop(name, None)
            self._in_flight -= 1
            if not self._in_flight:
                self._changed.clear()

    def _lost_race(self, key: str, started: int) -> bool:
        return self._changed.get(key, 0) > started

    async def _fetch_key(self, key: str) -> Doc | None:
        # The answer is as old as the moment the read began: "verified" and "unknown" are
        # timed from then, not from when a slow read came back.
        started, now = self._tick, self._clock()
        read_at = await self._read_floor()
        doc = await self._store.find_by_key(key)
        raced = self._lost_race(key, started)
        if raced or self._reload_tick > started:
            # A change (or a reload) landed while we read. While the stream is live it is at
            # least as new as this read, and the cache answers. While it is not, it may be a
            # replay older than the read: the versions decide -- the read is installed when
            # it is at least as new as everything known of the key and the document.
            if self._trusted():
                return self._snap.by_key.get(key) if raced else self._snap.by_key.get(key, doc)
            doc_id = None if doc is None else doc.get("_id")
            if read_at is None:
                return doc
            if not self._snap.admits_at(key, doc_id, read_at):
                return self._snap.by_key.get(key)
        if doc is None:
            self._snap.stamp_key(key, read_at)  # empty as of then: older replays stay out
            self._remember_unknown(self._negative_keys, key, now)
            self._verified_keys.pop(key, None)
            if self._snap.remove(key):
                self.invalidations["read_through"] += 1
            return None
        self._install_fetched(key, doc, read_at)
        if not self._trusted():
            self._verified_keys[key] = now
        return doc

    async def _fetch_container(self, container: str) -> list[Doc]:
        started, now = self._tick, self._clock()
        read_at = await self._read_floor()
        docs = await self._store.find_by_container(container)
        if self._reload_tick > started:
            return docs  # a reload swapped in meanwhile: answer, install nothing
        fetched: set[str] = set()
        for doc in docs:
            key = key_of(doc, self._key_field)
            if key is None or container_of(doc) != container:
                continue
            fetched.add(key)
            if not self._lost_race(key, started):
                self._install_fetched(key, doc, read_at)
        bucket = self._snap.by_container.get(container, {})
        for key in [k for k in bucket if k not in fetched and not self._lost_race(k, started)]:
            self._snap.remove(key)  # MongoDB says it no longer lands here; re-read by key
            self.invalidations["read_through"] += 1
        result = list(self._snap.by_container.get(container, {}).values())
        if not result:
            self._remember_unknown(self._negative_containers, container, now)
        elif not self._trusted():
            self._verified_containers[container] = now
        return result

    async def _read_floor(self) -> tuple[int, int] | None:
        """A majority time taken before a read-through (one more round trip per miss).

        The document read afterwards reflects every change older than it, so a replay
        that arrives later (a watcher catching up after a failover or an outage) cannot
        undo the answer -- also for a key the cache did not hold at all.
        """
        return await self._store.read_time()

    async def _fetch_all(self, _name: str) -> list[Doc]:
        return await self._store.load_all()

    def _install_fetched(self, key: str, doc: Doc, read_at: tuple[int, int] | None) -> None:
        # The read reflects every change to this document older than ``read_at`` (taken just
        # before it): a replayed message older than that must not move it back.
        self._snap.stamp(doc.get("_id"), read_at)
        self._snap.stamp_key(key, read_at)
        old = self._snap.by_key.get(key)
        self._negative_keys.pop(key, None)
        if old != doc:
            # Other reads still in flight began before this answer: they must not undo it
            # (a slower container read whose older result lacks this key, say).
            self._put(key, doc)
            if old is not None:
                self.invalidations["read_through"] += 1

    def _remember_unknown(self, negative: dict[str, float], name: str, now: float) -> None:
        if self._negative_ttl_s <= 0:
            return
        if len(negative) >= _NEGATIVE_SWEEP_AT:
            for stale in [n for n, until in negative.items() if until <= now]:
                del negative[stale]
            if len(negative) >= _NEGATIVE_SWEEP_AT:
                negative.clear()
        negative[name] = now + self._negative_ttl_s

    async def aclose(self) -> None:
        """Cancel reads still in flight (at shutdown) and wait for them to end."""
        tasks = [
            *self._key_flights.values(),
            *self._container_flights.values(),
            *self._all_flight.values(),
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Every caller may have gone away; read the outcome so asyncio does not warn about it.
    if not task.cancelled():
        task.exception()
