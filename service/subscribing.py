"""The subscriber: keeps the cache equal to MongoDB by following ``{ns}:invalidations``.

Why it exists: pub/sub is fire-and-forget, so a replica must itself notice every way a
message can be lost and reload when -- and only when -- one may have been. It implements
DESIGN.md rule 2:

1. subscribe and wait for the confirmation (:meth:`Feed.open`);
2. read ``{ns}:seq``, ``{ns}:epoch`` and ``{ns}:term`` as the starting position;
3. load the whole collection (majority read, after taking the majority read time as the
   snapshot's cluster-time floor) while buffering incoming messages;
4. replay buffered messages after the starting seq onto the new snapshot, then swap it in;
   late copies of messages from before the starting seq (a subscription on a lagging
   Redis replica) are ignored until the stream caught up (:mod:`service.snapshot_tail`).

Then every message goes through :func:`service.sequencing.decide` (apply, duplicate,
confirm, or reload and why) and :class:`service.applying.Applier` (never backwards per
document). A batch message (:mod:`shared.batches`) is judged as one seq range and its
new changes are applied in one step that never yields to the event loop between them, so
a lookup sees the cache before the batch or after it. Only heartbeats confirm the cache,
and only as of the moment the watcher says its published state reached (``behind``): a
watcher replaying a backlog after a failover keeps the replicas unconfirmed until it has
caught up, so lookups read MongoDB meanwhile.
Silence, a reconnect or redis-py's own resubscription reload nothing: they
make the stream *inactive* (the cache is no longer confirmed, so lookups read MongoDB once
it is older than ``SCC_MAX_STALENESS_S``) until the next heartbeat or message proves --
by its seq and term -- that nothing was lost, or that something was (reload).

Invariants: the only ways out of :meth:`Subscriber.run` are cancellation and a bug; a lost
Redis, a failing MongoDB or a bad message leads to a counted, logged retry while the
cache keeps serving the last good snapshot. Once a loss is known (a gap, a reset, a
conflict) the stream is inactive until a reload completes, so from that moment no answer
is older than the staleness bound, however long the reload takes or keeps failing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from service.applying import Applier, collection_paused, settle_heap
from service.caching import ConfigCache
from service.errors import FeedLost, ResyncRequired, StoreError
from service.feed import CAUGHT_UP, SUBSCRIBED, Feed
from service.loading import load_buffering
from service.sequencing import Position, Sequencer, Verdict, digest
from service.snapshot import Snapshot
from service.snapshot_tail import SnapshotTail
from service.storing import ConfigStore
from service.subscriber_state import (
    MAX_BACKOFF_S,
    MAX_SILENT_DOUBLINGS,
    BadMessageBudget,
    SubscriberState,
)
from shared.backoff import Backoff
from shared.batches import Batch, decode_batch
from shared.errors import MessageError
from shared.messages import Message

log = structlog.get_logger("service.subscribing")


class Subscriber:
    """Runs the start-up protocol, then follows the channel, reloading only on proven loss."""

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
        backoff: Backoff | None = None,
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
        self._backoff = backoff or Backoff(base=0.1, cap=MAX_BACKOFF_S)
        self._store_failed = False
        self.state = SubscriberState()
        self.applier = Applier(cache=cache, store=store)
        self._seq = Sequencer()
        self._quiet_since = clock()
        self._silent_streak = 0
        self._bad_budget = BadMessageBudget()
        #: Messages from before the position a load or resubscription started at.
        self._tail: SnapshotTail | None = None

    @property
    def ready(self) -> bool:
        """Warmed, subscribed, heartbeats arriving, and no loss known."""
        s = self.state
        return (
            self._cache.warmed
            and s.subscribed
            and s.stream_active
            and not s.syncing
            and s.pending_resync is None
        )

    # ------------------------------------------------------------------ loop
    async def run(self, *, max_cycles: int | None = None) -> None:
        """Subscribe, load, follow; reconnect on loss of Redis, reload on loss of messages.

        Failures (Redis, MongoDB) back off (capped, jittered); reloads are jittered and
        spaced at least ``min_resync_interval_s`` apart, so a storm of conflicts or a
        flapping connection cannot turn into a storm of full reloads. ``max_cycles`` is
        for tests.
        """
        need_open, cycles = True, 0
        try:
            while max_cycles is None or cycles < max_cycles:
                cycles += 1
                failed = False
                try:
                    if need_open:
                        await self._open()
                        need_open = False
                    reason = self.state.pending_resync
                    if reason is not None or not self._cache.warmed:
                        await self._pace(reason)
                        await self.sync(reason)
                    outcome = await self.follow()
                except ResyncRequired as e:
                    outcome = e.reason
                except FeedLost as e:
                    need_open, failed, outcome = True, True, None
                    self._lost(e)
                except StoreError as e:
                    failed, outcome = True, None
                    self._store_failed = True
                    self.state.last_error = str(e)
                    log.error("mongodb read failed; keeping the last good cache", error=str(e))
                if outcome == "silent":
                    need_open = True
                elif outcome is not None:
                    self._loss_known(outcome)
                if failed:
                    await self._sleep(self._backoff.next_delay())
                else:
                    self._backoff.reset()
                    if outcome is not None and outcome != "silent" and self._jitter_s > 0:
                        await self._sleep(self._jitter() * self._jitter_s)
        finally:
            self._set_active(False)
            self.state.subscribed = False
            await self._feed.close()

    def _loss_known(self, reason: str) -> None:
        """A message may have been lost: stop confirming the cache until a reload completes."""
        if self.state.pending_resync is None:
            self.state.pending_resync = reason
            log.warning("messages may have been missed; reload pending", reason=reason)
        self._set_active(False)

    async def _pace(self, reason: str | None) -> None:
        """Wait out the minimum spacing between reloads, still applying new changes."""
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
            if item is None or item in (SUBSCRIBED, CAUGHT_UP):
                continue  # the reload that follows covers whatever a resubscription lost
            batch = self._decode_or_none(item)
            if batch is not None:
                self._alive(batch)
                for message in batch.changes:
                    self.applier.apply_now(message)

    async def _open(self) -> None:
        reopened = self._cache.warmed
        await self._feed.close()
        self.state.subscribed = False
        await self._feed.open()
        self.state.subscribed = True
        if reopened:
            self.state.resubscriptions += 1
            await self._open_tail()
        if not self.state.redis_ok:
            log.info("redis reachable again; subscription confirmed")
        self.state.redis_ok = True
        self._quiet_since = self._clock()

    def _lost(self, error: FeedLost) -> None:
        if self.state.redis_ok or self.state.subscribed:
            log.warning(
                "redis subscription lost; serving the last good cache",
                error=str(error),
                seq=self._seq.position.seq,
                epoch=self._seq.position.epoch,
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
            self.state.resyncs["store_error" if self._store_failed else reason] += 1
            log.warning("resync", reason=reason, seq=self._seq.position.seq)
        elif reason is not None:
            log.warning("start-up load retried", reason=reason)
        self.state.syncing = True
        self._set_active(False)
        was_warm = self._cache.warmed
        try:
            s0, e0, t0 = await self._feed.position()
            self._tail = self._new_tail(Position(seq=s0, epoch=e0, term=t0))
            started, t_start = self._clock(), time.perf_counter()
            floor = await self._store.read_time()
            docs, buffered = await load_buffering(
                self._store.load_all(), self._feed, self._buffer_one, poll_s=self._poll_s
            )
            snapshot, skipped = Snapshot.build(docs, key_field=self._key_field, floor=floor)
            self._seq.reset(Position(seq=s0, epoch=e0, term=t0))
            self._tail.opened_at = self._clock()  # its window counts from the swap
            replayed = 0
            for raw, batch in buffered:
                if batch.last.seq > s0:  # older ones are already in the load
                    replayed += await self._handle(raw, batch, snapshot)
        finally:
            self.state.syncing = False
        self._cache.install(snapshot, fresh_at=started)
        if not was_warm:
            settle_heap()  # a no-op unless the process opted in (the replica's entry point)
        self.state.pending_resync = None
        self._store_failed = False
        if was_warm:
            self.state.reloads += 1
        self._last_sync_at = self._clock()
        self._publish_position()
        self.state.warmed_at = self._wall()
        self._quiet_since = self._clock()
        if skipped:
            log.warning("documents without a string key were skipped", count=skipped)
        log.info(
            "cache loaded",
            size=self._cache.size,
            seq=self._seq.position.seq,
            epoch=self._seq.position.epoch,
            s0=s0,
            buffered=len(buffered),
            replayed=replayed,
            seconds=round(time.perf_counter() - t_start, 3),
        )

    def _buffer_one(self, raw: bytes | str) -> Batch | None:
        """A message received while loading: decoded, applied to the serving cache at once."""
        if raw == CAUGHT_UP:
            self._caught_up()
            return None
        batch = self._decode_or_none(raw)
        if batch is not None:
            self._alive(batch)
            for message in batch.changes:
                if message.seq > self._seq.position.seq:
                    self.applier.apply_now(message)
        return batch

    # ---------------------------------------------------------------- follow
    async def follow(self) -> str:
        """Apply messages in order until one proves a loss (its reason) or the stream is
        silent for long enough to resubscribe (``"silent"``)."""
        inactive_after = 3 * self._heartbeat_s
        while True:
            quiet = self._clock() - self._quiet_since
            reconnect_after = inactive_after * 2 ** min(self._silent_streak, MAX_SILENT_DOUBLINGS)
            if quiet >= inactive_after and self.state.stream_active:
                log.warning(
                    "no message or heartbeat", seconds=round(quiet, 3), seq=self._seq.position.seq
                )
                self._set_active(False)
            if quiet >= reconnect_after:
                self._silent_streak += 1
                return "silent"
            limit = inactive_after if self.state.stream_active else reconnect_after
            item = await self._feed.receive(max(limit - quiet, 0.001))
            if item is None:
                continue
            if item == SUBSCRIBED:
                # redis-py reconnected by itself: messages may be missing, which the next
                # heartbeat (it carries the current seq) tells. Until then: unconfirmed.
                self.state.resubscriptions += 1
                self._set_active(False)
                await self._open_tail()
                continue
            if item == CAUGHT_UP:
                self._caught_up()
                continue
            with collection_paused():
                batch = self._decode_or_none(item)
            if batch is None:
                if self._bad_budget.spend(self._clock()):
                    return "bad_message"
                continue
            self._alive(batch)
            try:
                await self._handle(item, batch, None)
            except ResyncRequired as e:
                return e.reason
            # A turn for everything else between two messages: with a backlog, redis-py
            # hands out buffered messages without suspending, and a batch is applied
            # without yielding, so without this one busy subscriber would starve lookups
            # and the other subscribers of its process (which would then take their own
            # starvation for silence, resubscribe and lose messages).
            await asyncio.sleep(0)

    def _decode_or_none(self, raw: bytes | str) -> Batch | None:
        try:
            return decode_batch(raw, hmac_key=self._hmac_key)
        except MessageError as e:
            self.state.rejected[e.reason] += 1
            log.error(
                "invalidation message rejected",
                reason=e.reason,
                detail=e.detail[:200],
                size=len(raw),
                seq=self._seq.position.seq,
            )
            return None

    def _alive(self, batch: Batch) -> None:
        message = batch.last
        now = self._clock()
        self._quiet_since = now
        self._silent_streak = 0
        self.state.last_message_mono = now
        self.state.last_message_at = wall = self._wall()
        # Only changes measure lag: a heartbeat repeats the cluster time of the last change.
        if message.cluster_time is not None and message.kind in ("upsert", "delete"):
            self.state.lag_seconds = max(0.0, wall - message.cluster_time)

    async def _handle(self, raw: bytes | str, batch: Batch, snapshot: Snapshot | None) -> int:
        """Decide on the message's seq range (see :mod:`service.sequencing`); apply what is
        new in it (all of a batch in one step: :meth:`Applier.apply_batch`); how many."""
        head = batch.first
        if self._tail is not None and self._tail.covers(batch.last, self._clock()):
            self.state.tail_covered += len(batch)
            log.debug("message from before the starting point ignored", seq=batch.last.seq)
            return 0
        body = None if head.kind == "heartbeat" else digest(raw)
        decision = self._seq.decide_batch(batch, body)
        if decision.verdict is Verdict.RESYNC:
            assert decision.reason is not None
            raise ResyncRequired(decision.reason, decision.detail)
        if decision.verdict is Verdict.DUPLICATE:
            self.state.duplicates += len(batch)
            log.debug("duplicate message ignored", seq=head.seq, epoch=head.epoch, n=len(batch))
            return 0
        previous = self._seq.position
        self._seq.take_batch(batch, body, decision.skip)
        self.state.duplicates += decision.skip
        if previous.term is not None and previous.term != head.term:
            log.info(
                "new leader term continues the sequence",
                term=head.term,
                epoch=head.epoch,
                previous_term=previous.term,
                seq=head.seq,
            )
        self._publish_position()
        if decision.verdict is Verdict.CONFIRM:
            self._confirmed(head, snapshot)
            return 0
        if head.kind == "resync":
            raise ResyncRequired("broadcast", head.reason or "")
        todo = batch.changes[decision.skip :]
        await self.applier.apply_batch(todo, snapshot)
        log.debug("applied", seq=todo[0].seq, epoch=head.epoch, n=len(todo), key=head.key)
        return len(todo)

    def _confirmed(self, heartbeat: Message, snapshot: Snapshot | None) -> None:
        """A heartbeat at our seq: current as of ``behind`` seconds before it was sent (a
        replaying watcher trails real time), plus however long it took to reach us (a
        starved process, a slow Redis, or replication lag when subscribed on a Redis
        replica: measured from the watcher's ``published_at``, lag counts as age); live
        only while that is well inside the bound."""
        if snapshot is not None or self.state.pending_resync is not None:
            return
        in_transit = (
            max(0.0, self._wall() - heartbeat.published_at) if heartbeat.published_at else 0.0
        )
        age = (heartbeat.behind or 0.0) + in_transit
        self.state.behind_s = age
        self._cache.mark_fresh(age)
        self._set_active(age <= self._cache.max_staleness_s / 2)

    async def _open_tail(self) -> None:
        """After a resubscription: ignore late copies of what the cache already reflects
        (see service.snapshot_tail) until the marker published now arrives."""
        self._tail = self._new_tail(self._seq.position)
        try:
            await self._feed.mark()
        except FeedLost as e:  # the primary, not the subscription: the window ends the tail
            log.warning(
                "catch-up marker not published; late messages from before start-up are set aside "
                "for three heartbeat intervals instead",
                error=str(e),
                hint="nothing is lost; check that this replica may PUBLISH on its catch-up channel",
            )

    def _new_tail(self, position: Position) -> SnapshotTail:
        window = 3 * self._heartbeat_s
        return SnapshotTail(
            s0=position.seq, term=position.term, opened_at=self._clock(), window_s=window
        )

    def _caught_up(self) -> None:
        if self._tail is not None and not self._tail.closed:
            self._tail.close()
            log.debug("subscription caught up with the starting point", covered=self._tail.covered)

    def _publish_position(self) -> None:
        pos = self._seq.position
        self.state.last_seq = pos.seq
        self.state.epoch = pos.epoch
        self.state.term = pos.term

    def _set_active(self, active: bool) -> None:
        if active != self.state.stream_active:
            self.state.stream_active = active
            self._cache.set_stream_active(active)
