"""Sending messages: stamped with the term, size-capped, fenced and numbered in Redis.

Invariants:

* Every message goes out through ONE call of the fenced ``PUBLISH`` script, which checks
  the lease, takes the next ``{ns}:seq`` and publishes in the same atomic step, so
  sequence numbers are gap-free across leaders and a deposed leader sends nothing.
* Nothing is even attempted once the local lease deadline has passed
  (:meth:`Leadership.ensure`), and a refusal by the fence raises :class:`FencedOut`.
* A document whose message would exceed the size limit is sent key-only with
  ``refetch: true`` (replicas read it from MongoDB); so is a *poison document*, one
  that cannot be encoded at all (counted, logged with its ``_id``) -- never a crash.
* Heartbeats repeat the current seq (no increment) and only go out while the change
  stream is live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final, Protocol

import redis.asyncio as aioredis
import structlog
from opentelemetry.metrics import Histogram
from redis.exceptions import RedisError

from shared.channels import sharded
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.messages import Message, encode_body
from shared.scripts import FENCED_OUT, PUBLISH, PUBLISH_SHARDED
from watcher.electing import Leadership, Term
from watcher.errors import FencedOut
from watcher.reporting import WatcherStats
from watcher.timing import Clock, wait_event
from watcher.translating import Draft

log = structlog.get_logger("watcher.publishing")
#: How often a leader whose heartbeats are withheld checks whether its stream is live.
WITHHELD_POLL_S: Final = 0.005

#: Default largest message (bytes) before a document is sent key-only with ``refetch``.
DEFAULT_MAX_MESSAGE_BYTES: Final = 256 * 1024
#: What encoding a document into a message raises when it cannot be done (orjson's
#: ``JSONEncodeError`` -- e.g. nesting deeper than it goes -- is a ``TypeError``).
_UNENCODABLE: Final = (TypeError, ValueError, OverflowError, RecursionError)
#: Room kept for the ``"seq":N,`` the script splices in.
_SEQ_ROOM: Final = 32


class Channel(Protocol):
    """The fenced publish port (Redis in production, a list in unit tests)."""

    async def publish(
        self, body: bytes, *, epoch: int, incr: bool, term_id: str = "", floor: int = 0
    ) -> int:
        """Publish ``body`` (JSON without seq) as term ``epoch``; returns the seq used.

        ``incr`` takes the next seq; otherwise the current one is repeated (heartbeat).
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
        self, body: bytes, *, epoch: int, incr: bool, term_id: str = "", floor: int = 0
    ) -> int:
        """Run the script; the seq it assigned (or repeated)."""
        take = "1" if incr else "0"
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
    ) -> None:
        self._channel = channel
        self._leadership = leadership
        self._stats = stats
        self._clock = clock
        self._histogram = histogram
        self._hmac_key = hmac_key
        self._max_bytes = max_message_bytes
        #: ``cluster_time`` / ``ct`` of the last change published (carried by heartbeats).
        self.last_cluster_time: float | None = None
        self.last_ct: tuple[int, int] | None = None
        #: The last seq this publisher was given by the script.
        self.last_seq: int | None = None
        #: (term id, last seq of that term): the floor the publish script restores.
        self._term_seq: tuple[str, int] = ("", 0)

    def _body(self, draft: Draft, term: Term) -> bytes:
        epoch = term.epoch
        message = Message(
            kind=draft.kind,
            seq=0,
            epoch=epoch,
            term=term.term_id,
            ct=draft.ct,
            key=draft.key,
            doc=draft.doc,
            op=draft.op,
            cluster_time=draft.cluster_time,
            published_at=self._clock.wall(),
            reason=draft.reason,
            doc_id=draft.doc_id,
        )
        try:
            body = encode_body(message, hmac_key=self._hmac_key)
        except _UNENCODABLE as e:  # a poison document: it cannot travel, its key can
            return self._unencodable(message, e)
        if draft.kind != "upsert" or len(body) + _SEQ_ROOM <= self._max_bytes:
            return body
        self._stats.oversized += 1
        log.warning(
            "document too large for a message; sent key-only for refetch",
            key=draft.key,
            bytes=len(body),
            limit=self._max_bytes,
        )
        slim = Message(
            kind="upsert",
            seq=0,
            epoch=epoch,
            term=term.term_id,
            ct=draft.ct,
            key=draft.key,
            op=draft.op,
            cluster_time=draft.cluster_time,
            published_at=message.published_at,
            refetch=True,
            doc_id=draft.doc_id,
        )
        return encode_body(slim, hmac_key=self._hmac_key)

    def _unencodable(self, message: Message, error: Exception) -> bytes:
        """The encode-failure fallback: the same message without what cannot be encoded.

        An upsert goes key-only with ``refetch`` (replicas read the document themselves:
        they decode BSON, only its JSON form failed); a delete drops its ``_id``; and if
        even that fails, a ``resync`` (reason ``poison_event``) -- never an exception.
        """
        detail = f"{type(error).__name__}: {error}"[:300]
        self._stats.record_poison("unencodable", message.doc_id, detail)
        log.error(
            "poison document: cannot be encoded into a message; sent key-only",
            kind=message.kind,
            key=message.key,
            _id=repr(message.doc_id)[:200],
            error=detail,
        )
        fallbacks: list[Message] = []
        if message.kind == "upsert":
            fallbacks.append(replace(message, doc=None, refetch=True))
            fallbacks.append(replace(message, doc=None, refetch=True, doc_id=None))
        elif message.kind == "delete" and message.key is not None:
            fallbacks.append(replace(message, doc_id=None))
        fallbacks.append(
            replace(
                message,
                kind="resync",
                key=None,
                doc=None,
                doc_id=None,
                refetch=False,
                reason="poison_event",
            )
        )
        for slim in fallbacks:
            try:
                return encode_body(slim, hmac_key=self._hmac_key)
            except _UNENCODABLE:
                continue
        raise AssertionError("a resync message always encodes")

    async def send(self, draft: Draft, term: Term) -> int:
        """Publish ``draft`` in ``term``; its seq. Raises :class:`NotLeader`/``FencedOut``."""
        self._leadership.ensure(term)
        body = self._body(draft, term)
        started = time.perf_counter()
        try:
            seq = await self._channel.publish(
                body, epoch=term.epoch, incr=True, term_id=term.term_id, floor=self._floor(term)
            )
        except FencedOut:
            self._stats.fenced += 1
            raise
        if self._histogram is not None:
            self._histogram.record(time.perf_counter() - started)
        self._note_seq(term, seq)
        if draft.kind == "resync":
            self._stats.resyncs[draft.reason or "unknown"] += 1
            log.warning("resync published", seq=seq, epoch=term.epoch, reason=draft.reason)
        else:
            self._stats.events[draft.op or draft.kind] += 1
            if draft.cluster_time is not None:
                self.last_cluster_time = draft.cluster_time
            if draft.ct is not None:
                self.last_ct = draft.ct
            log.debug("published", seq=seq, epoch=term.epoch, kind=draft.kind, key=draft.key)
        return seq

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
