"""Sending messages: stamped with the term, size-capped, fenced and numbered in Redis.

Invariants:

* Every message goes out through ONE call of the fenced ``PUBLISH`` script, which checks
  the lease, takes the next ``{ns}:seq`` (or the next n, for a batch of n changes) and
  publishes in the same atomic step, so sequence numbers are gap-free across leaders and
  a deposed leader sends nothing.
* :meth:`Publisher.send_batch` sends the changes of one change-stream batch as few
  messages as ``SCC_PUBLISH_BATCH_MAX_CHANGES`` / ``SCC_PUBLISH_BATCH_MAX_BYTES`` allow
  (:mod:`shared.batches`); a batch too big for one message is split, never dropped, and
  a lone change is a plain ``v: 1`` message, so batching adds no latency.
* Nothing is even attempted once the local lease deadline has passed
  (:meth:`Leadership.ensure`), and a refusal by the fence raises :class:`FencedOut`.
* A document whose message would exceed the size limit is sent key-only with
  ``refetch: true`` (replicas read it from MongoDB); so is a *poison document*, one
  that cannot be encoded at all (counted, logged with its ``_id``) -- never a crash
  (:mod:`watcher.encoding`).
* Heartbeats repeat the current seq (no increment) and only go out while the change
  stream is live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import redis.asyncio as aioredis
import structlog
from opentelemetry.metrics import Histogram
from redis.exceptions import RedisError

from shared.batches import BATCH_KINDS, BATCH_OVERHEAD, encode_batch_body
from shared.channels import sharded
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.messages import MAX_MESSAGE_BYTES, Message, encode_body
from shared.scripts import FENCED_OUT, PUBLISH, PUBLISH_SHARDED
from watcher.electing import Leadership, Term
from watcher.encoding import Encoder
from watcher.errors import FencedOut
from watcher.reporting import WatcherStats
from watcher.timing import Clock, wait_event
from watcher.translating import Draft

log = structlog.get_logger("watcher.publishing")
#: How often a leader whose heartbeats are withheld checks whether its stream is live.
WITHHELD_POLL_S: Final = 0.005

#: Default largest message (bytes) before a document is sent key-only with ``refetch``.
DEFAULT_MAX_MESSAGE_BYTES: Final = 256 * 1024


class Channel(Protocol):
    """The fenced publish port (Redis in production, a list in unit tests)."""

    async def publish(
        self,
        body: bytes,
        *,
        epoch: int,
        incr: bool,
        term_id: str = "",
        floor: int = 0,
        count: int = 1,
    ) -> int:
        """Publish ``body`` (JSON without seq) as term ``epoch``; returns the seq used.

        ``incr`` takes the next ``count`` seqs (a batch of ``count`` changes) and returns
        the first of them; otherwise the current one is repeated (heartbeat).
        ``term_id`` is recorded next to ``{ns}:seq``; a counter found below ``floor`` (the
        term's last seq: Redis lost writes) is put back to it first. Raises
        :class:`FencedOut` when the lease is not ours, :class:`StoreUnavailable`.
        """
        ...


class RedisChannel:
    """:class:`Channel` through ``shared.scripts.PUBLISH`` on ``{ns}:invalidations``."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, instance_id: str) -> None:
        self._keys = [keys.leader, keys.epoch, keys.seq, keys.term]
        self._channel = keys.invalidations
        self._id = instance_id
        self._script = redis.register_script(PUBLISH_SHARDED if sharded(redis) else PUBLISH)

    async def publish(
        self,
        body: bytes,
        *,
        epoch: int,
        incr: bool,
        term_id: str = "",
        floor: int = 0,
        count: int = 1,
    ) -> int:
        """Run the script; the (first) seq it assigned, or the one it repeated."""
        take = str(count) if incr else "0"
        args: list[str | int | bytes] = [self._id, epoch, self._channel, body, take, term_id, floor]
        try:
            result = await self._script(keys=self._keys, args=args)
        except RedisError as e:
            raise StoreUnavailable(f"publish failed: {e}") from e
        if not isinstance(result, list):
            if int(result) == FENCED_OUT:
                raise FencedOut(f"publish refused: epoch {epoch} no longer holds the lease")
            raise StoreUnavailable(f"publish script returned {result!r}")
        return int(result[0])


class Publisher:
    """Stamps drafts with the term and time, encodes, and sends them fenced."""

    def __init__(
        self,
        *,
        channel: Channel,
        leadership: Leadership,
        stats: WatcherStats,
        clock: Clock,
        histogram: Histogram | None = None,
        hmac_key: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        batch_max_changes: int = 1,
        batch_max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._channel = channel
        self._leadership = leadership
        self._stats = stats
        self._clock = clock
        self._histogram = histogram
        self._hmac_key = hmac_key
        self._encoder = Encoder(stats=stats, hmac_key=hmac_key, max_bytes=max_message_bytes)
        self._batch_max_changes = batch_max_changes
        self._batch_max_bytes = min(batch_max_bytes, MAX_MESSAGE_BYTES)
        #: ``cluster_time`` / ``ct`` of the last change published (carried by heartbeats).
        self.last_cluster_time: float | None = None
        self.last_ct: tuple[int, int] | None = None
        #: The last seq this publisher was given by the script.
        self.last_seq: int | None = None
        #: (term id, last seq of that term): the floor the publish script restores.
        self._term_seq: tuple[str, int] = ("", 0)

    @property
    def batch_max_changes(self) -> int:
        """Most changes one message carries (``SCC_PUBLISH_BATCH_MAX_CHANGES``)."""
        return self._batch_max_changes

    def _message(self, draft: Draft, term: Term, published_at: float) -> Message:
        return Message(
            kind=draft.kind,
            seq=0,
            epoch=term.epoch,
            term=term.term_id,
            ct=draft.ct,
            key=draft.key,
            doc=draft.doc,
            op=draft.op,
            cluster_time=draft.cluster_time,
            published_at=published_at,
            reason=draft.reason,
            doc_id=draft.doc_id,
        )

    async def send(self, draft: Draft, term: Term) -> int:
        """Publish ``draft`` in ``term``; its seq. Raises :class:`NotLeader`/``FencedOut``."""
        self._leadership.ensure(term)
        body = self._encoder.body(self._message(draft, term, self._clock.wall()))
        seq = await self._publish(body, term, 1)
        self._published(draft, seq, term)
        return seq

    async def send_batch(self, drafts: Sequence[Draft], term: Term) -> list[int]:
        """Publish ``drafts`` (in order) as few messages as the bounds allow; their seqs.

        Consecutive upserts and deletes share a ``v: 2`` message (:mod:`shared.batches`)
        of at most ``batch_max_changes`` changes and ``batch_max_bytes`` bytes; a resync,
        a lone change, or a change that fell back to a resync goes out as ``v: 1``. Each
        message is one fenced script call; nothing waits for more drafts to come.
        """
        self._leadership.ensure(term)
        if len(drafts) <= 1 or self._batch_max_changes <= 1:
            return [await self.send(draft, term) for draft in drafts]
        published_at = self._clock.wall()
        seqs: list[int] = []
        pending: list[tuple[Draft, Message, bytes]] = []
        size = BATCH_OVERHEAD
        for draft in drafts:
            if draft.kind not in BATCH_KINDS:
                seqs += await self._flush(pending, term, published_at)
                seqs.append(await self.send(draft, term))
                continue
            message = self._message(draft, term, published_at)
            used, data, fragment = self._encoder.encode(message, batch=True)
            if not fragment:  # fell back to a resync: alone, in order
                seqs += await self._flush(pending, term, published_at)
                seq = await self._publish(data, term, 1)
                self._published(draft, seq, term)
                seqs.append(seq)
                continue
            full = len(pending) >= self._batch_max_changes
            if pending and (full or size + len(data) + 1 > self._batch_max_bytes):
                seqs += await self._flush(pending, term, published_at)
                size = BATCH_OVERHEAD
            pending.append((draft, used, data))
            size += len(data) + 1
        seqs += await self._flush(pending, term, published_at)
        return seqs

    async def _flush(
        self, pending: list[tuple[Draft, Message, bytes]], term: Term, published_at: float
    ) -> list[int]:
        """Send what ``pending`` holds as one message (``v: 1`` if it is one change)."""
        if not pending:
            return []
        batch, pending[:] = list(pending), []
        if len(batch) == 1:
            body = encode_body(batch[0][1], hmac_key=self._hmac_key)
        else:
            body = encode_batch_body(
                [data for _, _, data in batch],
                epoch=term.epoch,
                term=term.term_id,
                published_at=published_at,
                hmac_key=self._hmac_key,
            )
        first = await self._publish(body, term, len(batch))
        if len(batch) > 1:
            self._stats.batches += 1
        for i, (draft, _, _) in enumerate(batch):
            self._published(draft, first + i, term)
        return list(range(first, first + len(batch)))

    async def _publish(self, body: bytes, term: Term, count: int) -> int:
        """One fenced publish taking ``count`` seqs; the first. Notes the last seq taken."""
        self._leadership.ensure(term)
        started = time.perf_counter()
        try:
            first = await self._channel.publish(
                body,
                epoch=term.epoch,
                incr=True,
                term_id=term.term_id,
                floor=self._floor(term),
                count=count,
            )
        except FencedOut:
            self._stats.fenced += 1
            raise
        if self._histogram is not None:
            self._histogram.record(time.perf_counter() - started)
        self._note_seq(term, first + count - 1)
        return first

    def _published(self, draft: Draft, seq: int, term: Term) -> None:
        if draft.kind == "resync":
            self._stats.resyncs[draft.reason or "unknown"] += 1
            log.warning("resync published", seq=seq, epoch=term.epoch, reason=draft.reason)
            return
        self._stats.events[draft.op or draft.kind] += 1
        if draft.cluster_time is not None:
            self.last_cluster_time = draft.cluster_time
        if draft.ct is not None:
            self.last_ct = draft.ct
        log.debug("published", seq=seq, epoch=term.epoch, kind=draft.kind, key=draft.key)

    async def heartbeat(self, term: Term) -> int:
        """Publish a ``heartbeat`` carrying the current seq (not incremented)."""
        self._leadership.ensure(term)
        message = Message(
            kind="heartbeat",
            seq=0,
            epoch=term.epoch,
            term=term.term_id,
            cluster_time=self.last_cluster_time,
            ct=self.last_ct,
            published_at=(now := self._clock.wall()),
            behind=self._stats.behind(now),
        )
        try:
            seq = await self._channel.publish(
                encode_body(message, hmac_key=self._hmac_key),
                epoch=term.epoch,
                incr=False,
                term_id=term.term_id,
                floor=self._floor(term),
            )
        except FencedOut:
            self._stats.fenced += 1
            raise
        self._note_seq(term, seq)
        return seq

    def _floor(self, term: Term) -> int:
        held, seq = self._term_seq
        return seq if held == term.term_id else 0

    def _note_seq(self, term: Term, seq: int) -> None:
        self.last_seq = seq
        self._term_seq = (term.term_id, max(seq, self._floor(term)))


async def run_heartbeats(
    publisher: Publisher,
    term: Term,
    stop: asyncio.Event,
    *,
    interval_ms: int,
    stats: WatcherStats,
    clock: Clock,
    healthy: Callable[[], bool] = lambda: True,
) -> None:
    """Publish a heartbeat every interval while leading ``term`` and ``healthy()``.

    A heartbeat tells replicas "the change stream is live and you have seen seq N", so it
    is withheld while the stream is not open or has gone silent: replicas then notice the
    silence and read through to MongoDB (DESIGN.md rule 2). A Redis failure is logged and
    retried next interval (the lease loop decides whether we still lead); ``NotLeader`` /
    ``FencedOut`` end the loop so the session steps down.
    """
    interval = interval_ms / 1000
    failing = withheld = False
    while not stop.is_set():
        if not healthy():
            if not withheld:
                log.warning("change stream not live; heartbeats withheld", epoch=term.epoch)
            withheld = True
        else:
            if withheld:
                log.info("change stream live again; heartbeats resumed", epoch=term.epoch)
            withheld = False
            try:
                async with asyncio.timeout(max(interval, 0.5)):
                    await publisher.heartbeat(term)
            except (StoreUnavailable, TimeoutError) as e:
                stats.record_error("heartbeat", e, at=clock.wall())
                if not failing:
                    log.warning(
                        "heartbeat publish failed", epoch=term.epoch, error=type(e).__name__
                    )
                failing = True
            else:
                failing = False
        # Withheld: look again soon, so a new leader's first heartbeat leaves the moment
        # its stream is open, not one interval later.
        await wait_event(stop, min(interval, WITHHELD_POLL_S) if withheld else interval)
