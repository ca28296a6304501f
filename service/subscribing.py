"""The subscriber: keeps the cache equal to MongoDB by following ``{ns}:invalidations``.

Why it exists: pub/sub is fire-and-forget, so a replica must itself notice every way a
message can be lost and reload when it happens. It implements DESIGN.md rule 2:

1. subscribe and wait for the confirmation (:meth:`Feed.open`);
2. read ``{ns}:seq`` as S0 (and ``{ns}:epoch``);
3. load the whole collection (majority read) while buffering incoming messages;
4. replay buffered messages with seq > S0 onto the new snapshot, then swap it in.

Then, in order, each message is checked before it is applied: an epoch lower than the
one we follow, a heartbeat whose seq is ahead of ours, a skipped seq, a message that
does not decode or verify, a second subscribe confirmation (redis-py reconnected and
resubscribed by itself), or silence for 3 heartbeat intervals → reload by the same
protocol. Messages at or below the applied seq are duplicates and ignored -- but the
epoch check comes first, so after a Redis restart (seq and epoch start again from 1)
new messages are never mistaken for duplicates.

Invariant: the only ways out of :meth:`Subscriber.run` are cancellation and a bug; a
lost Redis, a failing MongoDB or a bad message leads to a counted, logged retry, while
the cache keeps serving the last good snapshot.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from service.caching import ConfigCache
from service.errors import RESYNC_REASONS, FeedLost, ResyncRequired, StoreError
from service.feed import SUBSCRIBED, Feed
from service.snapshot import Snapshot
from service.storing import ConfigStore
from shared.errors import MESSAGE_ERROR_REASONS, MessageError
from shared.messages import Message, decode

log = structlog.get_logger("service.subscribing")

#: Longest wait between reconnect attempts while Redis is unreachable.
MAX_BACKOFF_S: Final = 5.0
#: Silence doubles the reconnect delay this many times at most (no watcher running).
MAX_SILENT_DOUBLINGS: Final = 4
#: A cycle that lasted this long before failing resets the failure backoff.
STABLE_CYCLE_S: Final = 30.0


@dataclass
class SubscriberState:
    """What the subscriber knows, for health, metrics and the heartbeat hash."""

    subscribed: bool = False
    redis_ok: bool = True
    stream_active: bool = False
    syncing: bool = False
    last_seq: int | None = None
    epoch: int | None = None
    last_message_at: float | None = None  # unix seconds
    last_message_mono: float | None = None
    lag_seconds: float | None = None
    warmed_at: float | None = None  # unix seconds of the last completed load
    last_error: str = ""
    resyncs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESYNC_REASONS, 0))
    rejected: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(sorted(MESSAGE_ERROR_REASONS), 0)
    )
    duplicates: int = 0


class Subscriber:
    """Runs the start-up protocol, then follows the channel, reloading whenever needed."""

    def __init__(
        self,
        *,
        feed: Feed,
        store: ConfigStore,
        cache: ConfigCache,
        key_field: str,
        heartbeat_interval_s: float,
        resync_jitter_s: float = 0.0,
        min_resync_interval_s: float = 1.0,
        hmac_key: bytes | None = None,
        poll_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._feed = feed
        self._store = store
        self._cache = cache
        self._key_field = key_field
        self._heartbeat_s = heartbeat_interval_s
        self._jitter_s = resync_jitter_s
        self._min_resync_interval_s = min_resync_interval_s
        self._last_sync_at: float | None = None
        self._hmac_key = hmac_key
        self._poll_s = poll_s
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._jitter = jitter
        self.state = SubscriberState()
        self._last_seq = 0
        self._epoch: int | None = None
        self._quiet_since = clock()
        self._silent_streak = 0

    @property
    def ready(self) -> bool:
        """Warmed, subscribed, and heartbeats arriving."""
        s = self.state
        return self._cache.warmed and s.subscribed and s.stream_active and not s.syncing

    # ------------------------------------------------------------------ loop
    async def run(self, *, max_cycles: int | None = None) -> None:
        """Subscribe, load, follow; on any loss reconnect and reload. Runs until cancelled.

        Failures (Redis, MongoDB) back off exponentially; reloads are spaced at least
        ``min_resync_interval_s`` apart, so a storm of bad messages or a flapping
        connection cannot turn into a storm of full reloads. ``max_cycles`` is for tests.
        """
        reason: str | None = None
        need_open, failures, cycles = True, 0, 0
        try:
            while max_cycles is None or cycles < max_cycles:
                cycles += 1
                started = self._clock()
                try:
                    if need_open:
                        await self._open()
                        need_open = False
                    await self._pace(reason)
                    await self.sync(reason)
                    reason = await self.follow()
                except ResyncRequired as e:
                    reason = e.reason
                except FeedLost as e:
                    need_open, reason = True, "redis_reconnect"
                    failures = self._failures_after(failures, started)
                    self._lost(e)
                except StoreError as e:
                    reason = "store_error"
                    failures = self._failures_after(failures, started)
                    self.state.last_error = str(e)
                    log.error("mongodb read failed; keeping the last good cache", error=str(e))
                else:
                    failures = 0
                if reason == "silent":
                    need_open = True
                if failures:
                    await self._sleep(min(MAX_BACKOFF_S, 0.1 * 2 ** (failures - 1)))
                elif reason == "broadcast" and self._jitter_s > 0:
                    await self._sleep(self._jitter() * self._jitter_s)
        finally:
            self._set_active(False)
            self.state.subscribed = False
            await self._feed.close()

    def _failures_after(self, failures: int, cycle_started: float) -> int:
        # A cycle that ran for a while before failing starts the backoff afresh.
        return 1 if self._clock() - cycle_started > STABLE_CYCLE_S else failures + 1

    async def _pace(self, reason: str | None) -> None:
        """Wait out the minimum spacing between reloads, still applying new changes.

        The reload that follows re-reads everything, but a change that arrives while we
        wait is applied to the serving cache at once (best effort, newer than what it
        holds), so pacing reloads never delays a change by up to a second.
        """
        if reason is None or self._last_sync_at is None:
            return
        deadline = self._last_sync_at + self._min_resync_interval_s
        if deadline - self._clock() <= 0:
            return
        log.info(
            "resync deferred: the last one was moments ago",
            seconds=round(deadline - self._clock(), 3),
        )
        while (left := deadline - self._clock()) > 0:
            item = await self._feed.receive(left)
            if item is None or item == SUBSCRIBED:
                continue  # the reload that follows covers whatever a resubscription lost
            try:
                message = self._decode(item)
            except ResyncRequired:
                continue  # counted and logged by _decode; the reload is coming anyway
            self._alive(message)
            self._apply_best_effort(message)

    async def _open(self) -> None:
        await self._feed.close()
        self.state.subscribed = False
        await self._feed.open()
        self.state.subscribed = True
        if not self.state.redis_ok:
            log.info("redis reachable again; subscription confirmed")
        self.state.redis_ok = True
        self._quiet_since = self._clock()

    def _lost(self, error: FeedLost) -> None:
        if self.state.redis_ok or self.state.subscribed:
            log.warning(
                "redis subscription lost; serving the last good cache",
                error=str(error),
                seq=self._last_seq,
                epoch=self._epoch,
            )
        else:
            log.debug("redis still unreachable", error=str(error))
        self.state.redis_ok = False
        self.state.subscribed = False
        self.state.last_error = str(error)
        self._set_active(False)

    # ------------------------------------------------------------------ sync
    async def sync(self, reason: str | None) -> None:
        """Steps 2-4 of the start-up protocol (the feed is already subscribed)."""
        if reason is not None and self._cache.warmed:
            self.state.resyncs[reason] += 1
            log.warning("resync", reason=reason, seq=self._last_seq, epoch=self._epoch)
        elif reason is not None:
            log.warning("start-up load retried", reason=reason)
        self.state.syncing = True
        try:
            s0, e0 = await self._feed.position()
            started, t0 = self._clock(), time.perf_counter()
            docs, messages = await self._load_buffering()
            snapshot, skipped = Snapshot.build(docs, key_field=self._key_field)
            self._last_seq, self._epoch = s0, e0
            replayed = 0
            for message in messages:
                if message.seq > s0:  # older ones are already in the load
                    replayed += await self._handle(message, snapshot)
        finally:
            self.state.syncing = False
        self._cache.install(snapshot, fresh_at=started)
        self._last_sync_at = self._clock()
        self._publish_position()
        self.state.warmed_at = self._wall()
        self._quiet_since = self._clock()
        if skipped:
            log.warning("documents without a string key were skipped", count=skipped)
        log.info(
            "cache loaded",
            size=self._cache.size,
            seq=self._last_seq,
            epoch=self._epoch,
            s0=s0,
            buffered=len(messages),
            replayed=replayed,
            seconds=round(time.perf_counter() - t0, 3),
        )

    async def _load_buffering(self) -> tuple[list[dict[str, Any]], list[Message]]:
        load = asyncio.create_task(self._store.load_all(), name="scc-replica-load")
        buffered: list[Message] = []
        try:
            while True:
                while (item := await self._feed.receive(0)) is not None:
                    if item == SUBSCRIBED:
                        raise ResyncRequired("resubscribed", "redis-py resubscribed during load")
                    message = self._decode(item)
                    self._alive(message)
                    buffered.append(message)
                    self._apply_best_effort(message)
                if load.done():
                    return load.result(), buffered
                await asyncio.wait({load}, timeout=self._poll_s)
        finally:
            if not load.done():
                load.cancel()
                await asyncio.gather(load, return_exceptions=True)

    def _apply_best_effort(self, message: Message) -> None:
        # During a reload the serving snapshot keeps receiving changes that are newer than
        # what it holds (seq and epoch ahead of the last applied); the checked replay onto
        # the new snapshot follows. Stale or foreign-epoch messages are left alone.
        if message.seq <= self._last_seq or (
            self._epoch is not None and message.epoch < self._epoch
        ):
            return
        if message.kind == "delete":
            self._cache.apply_delete(message.key, message.doc_id)
        elif message.kind == "upsert" and message.doc is not None and message.key is not None:
            self._cache.apply_upsert(message.key, message.doc)

    # ---------------------------------------------------------------- follow
    async def follow(self) -> str:
        """Apply messages in order until one calls for a resync; return its reason."""
        inactive_after = 3 * self._heartbeat_s
        while True:
            quiet = self._clock() - self._quiet_since
            reconnect_after = inactive_after * 2 ** min(self._silent_streak, MAX_SILENT_DOUBLINGS)
            if quiet >= inactive_after and self.state.stream_active:
                log.warning("no message or heartbeat", seconds=round(quiet, 3), seq=self._last_seq)
                self._set_active(False)
            if quiet >= reconnect_after:
                self._silent_streak += 1
                return "silent"
            limit = inactive_after if self.state.stream_active else reconnect_after
            item = await self._feed.receive(max(limit - quiet, 0.001))
            if item is None:
                continue
            if item == SUBSCRIBED:
                return "resubscribed"
            try:
                message = self._decode(item)
                self._alive(message)
                await self._handle(message, None)
            except ResyncRequired as e:
                return e.reason

    def _decode(self, raw: bytes | str) -> Message:
        try:
            return decode(raw, hmac_key=self._hmac_key)
        except MessageError as e:
            self.state.rejected[e.reason] += 1
            log.error(
                "invalidation message rejected",
                reason=e.reason,
                detail=e.detail[:200],
                size=len(raw),
                seq=self._last_seq,
            )
            raise ResyncRequired("bad_message", e.reason) from e

    def _alive(self, message: Message) -> None:
        now = self._clock()
        self._quiet_since = now
        self._silent_streak = 0
        self.state.last_message_mono = now
        self.state.last_message_at = wall = self._wall()
        # Only changes measure lag: a heartbeat repeats the cluster time of the last change.
        if message.cluster_time is not None and message.kind in ("upsert", "delete"):
            self.state.lag_seconds = max(0.0, wall - message.cluster_time)

    async def _handle(self, message: Message, snapshot: Snapshot | None) -> int:
        """Check ``message`` against what was applied, then apply it (1) or ignore it (0)."""
        if self._epoch is not None and message.epoch < self._epoch:
            raise ResyncRequired("epoch_backwards", f"epoch {message.epoch} < {self._epoch}")
        if message.kind == "heartbeat":
            if message.seq > self._last_seq:
                raise ResyncRequired("heartbeat_ahead", f"seq {message.seq} > {self._last_seq}")
            self._follow_epoch(message)
            if snapshot is None:
                self._cache.mark_fresh()
                self._set_active(True)
            return 0
        if message.seq <= self._last_seq:
            self.state.duplicates += 1
            log.debug("duplicate message ignored", seq=message.seq, epoch=message.epoch)
            return 0
        if message.seq != self._last_seq + 1:
            raise ResyncRequired("gap", f"expected seq {self._last_seq + 1}, got {message.seq}")
        self._last_seq = message.seq
        self._follow_epoch(message)
        if message.kind == "resync":
            self._publish_position()
            raise ResyncRequired("broadcast", message.reason or "")
        await self._apply(message, snapshot)
        self._publish_position()
        if snapshot is None:
            self._cache.mark_fresh()
            self._set_active(True)
        return 1

    def _follow_epoch(self, message: Message) -> None:
        if self._epoch is None or message.epoch > self._epoch:
            if self._epoch is not None:
                log.info("new leader epoch", epoch=message.epoch, previous=self._epoch)
            self._epoch = message.epoch
            self._publish_position()

    async def _apply(self, message: Message, snapshot: Snapshot | None) -> None:
        key, doc_id = message.key, message.doc_id
        if message.kind == "delete":
            if snapshot is None:
                self._cache.apply_delete(key, doc_id)
            elif doc_id is not None:
                snapshot.remove_document(key, doc_id)
            elif key is not None:
                snapshot.remove(key)
            log.debug("applied", seq=message.seq, epoch=message.epoch, key=key, kind="delete")
            return
        assert key is not None  # Message guarantees a key for upserts
        doc, reason = message.doc, "upsert"
        if message.refetch:
            doc, reason = await self._store.find_by_key(key), "refetch"
        if snapshot is not None:
            if doc is None:
                snapshot.remove(key)
            else:
                snapshot.put(key, doc)
        elif doc is None:
            self._cache.apply_delete(key)
        else:
            self._cache.apply_upsert(key, doc, reason=reason)
        log.debug("applied", seq=message.seq, epoch=message.epoch, key=key, kind=message.kind)

    def _publish_position(self) -> None:
        self.state.last_seq = self._last_seq
        self.state.epoch = self._epoch

    def _set_active(self, active: bool) -> None:
        if active != self.state.stream_active:
            self.state.stream_active = active
            self._cache.set_stream_active(active)
