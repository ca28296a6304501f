"""The :class:`~service.subscribing.Feed` on redis-py's asyncio pub/sub.

Why a module of its own: it is the only place that knows redis-py's pub/sub quirks, and
it turns every one of them into something the subscriber's rules handle:

* a subscription counts only once Redis confirmed it (``subscribe`` reply), within a
  deadline, so a hung server surfaces as :class:`FeedLost` rather than a hang;
* redis-py reconnects and resubscribes by itself after a dropped connection and then
  delivers another ``subscribe`` confirmation: passed on as :data:`SUBSCRIBED`, which
  the subscriber reads as "messages may have been lost";
* every redis-py or socket error becomes :class:`FeedLost`, chained;
* on a ``redis+cluster://`` client the channel is a shard channel (``SSUBSCRIBE``, see
  :mod:`shared.channels`), on the shard that owns the namespace's slot;
* on a ``redis+sentinel://`` client it also follows Sentinel's ``+switch-master``
  (:class:`~shared.sentinel_watching.SwitchWatch`): a promotion closes the connections at
  once, so the subscription moves to the new primary (and is read as a resubscription)
  instead of listening to a demoted one until Sentinel reconfigures it.

The subscription may run on another client than the counters (``subscribe_via``, built
from ``SCC_REDIS_SUBSCRIBE_URL``): a Redis replica, where PUBLISH arrives through
replication. ``{ns}:seq`` is read on the primary all the same -- the start-up protocol
needs the primary's counter, read after the replica confirmed the subscription (see
:mod:`service.snapshot_tail` for why lag keeps it correct). A replica subscription moves
by itself: redis-py reconnects through the pool, which picks the next replica (or the
master), and Sentinel kills the pub/sub clients of every node it reconfigures; either way
the subscriber sees a resubscription.

*Catch-up marker*: :meth:`RedisFeed.position` reads the counters, then PUBLISHes a token
on this replica's own channel (``Keys.catch_up``) on the primary -- sent after the read's
reply, so executed after the read -- and the subscription listens on that channel too.
PUBLISH travels the replication stream in the primary's order, so when the token arrives
(:data:`CAUGHT_UP`) every message published before the read has arrived: the end of the
late tail (:mod:`service.snapshot_tail`). Two commands, not a MULTI/EXEC, so it works the
same on every client (a cluster takes no keyless command in a transaction).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from typing import Any

import redis.asyncio as aioredis
import structlog

from service.errors import FeedLost
from service.feed import CAUGHT_UP, SUBSCRIBED
from shared.channels import next_message, publish, subscribe
from shared.clients import REDIS_DOWN_ERRORS, SentinelRedis
from shared.keys import Keys
from shared.sentinel_watching import SwitchWatch, stop_watch

log = structlog.get_logger("service.redis_feed")
#: Through Sentinel, how often a refused subscription is tried again within one open().
SENTINEL_RETRY_S = 0.05


class RedisFeed:
    """Subscription to ``{ns}:invalidations`` plus reads of ``{ns}:seq`` / ``{ns}:epoch``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        confirm_timeout_s: float,
        subscribe_via: aioredis.Redis | None = None,
        instance_id: str | None = None,
    ) -> None:
        """``subscribe_via``: the client to subscribe through (default ``redis``, the primary);
        ``instance_id`` names the catch-up channel (default: a random name)."""
        self._redis = redis
        self._subscribe_via = redis if subscribe_via is None else subscribe_via
        self._marker_channel = keys.catch_up(instance_id or secrets.token_hex(6))
        self._marks = itertools.count(1)
        self._marked = ""
        self._keys = keys
        self._confirm_timeout_s = confirm_timeout_s
        self._pubsub: Any = None  # redis.asyncio.client.PubSub (untyped in redis-py)
        #: One watch for the feed's lifetime (it remembers the switches already acted on).
        self._watch = (
            SwitchWatch(redis, record_in=keys.failover)
            if isinstance(redis, SentinelRedis)
            else None
        )
        self._watch_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Subscribe and wait for Redis to confirm it; FeedLost if it does not in time.

        Through Sentinel a refused connection is most likely a failover in progress: the
        attempt is repeated every :data:`SENTINEL_RETRY_S` until the confirmation deadline,
        so the subscription moves to the new primary the moment it is promoted instead of
        after the subscriber's backoff.
        """
        if self._watch is not None and self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch.run(), name="service.sentinel-watch")
            self._watch_task.add_done_callback(_report_end)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._confirm_timeout_s
        while True:
            try:
                await self._subscribe(max(deadline - loop.time(), 0.05))
                return
            except FeedLost:
                if self._watch is None or loop.time() + SENTINEL_RETRY_S >= deadline:
                    raise
            await self._close_subscription()
            await asyncio.sleep(SENTINEL_RETRY_S)

    async def _subscribe(self, within_s: float) -> None:
        pubsub = self._subscribe_via.pubsub()
        self._pubsub = pubsub
        channel = self._keys.invalidations
        try:
            async with asyncio.timeout(within_s):
                await subscribe(self._redis, pubsub, channel, self._marker_channel)
                confirmed = 0
                while confirmed < 2:
                    reply = await next_message(self._redis, pubsub, wait_s=within_s)
                    if reply is not None and reply.get("type") == "subscribe":
                        confirmed += 1
                return
        except TimeoutError as e:
            raise FeedLost(
                f"redis did not confirm SUBSCRIBE {channel} within {within_s:.2f}s"
            ) from e
        except REDIS_DOWN_ERRORS as e:
            raise FeedLost(f"cannot subscribe to {channel}: {e}") from e

    async def receive(self, wait_s: float) -> bytes | str | None:
        """The next message body (bytes), :data:`SUBSCRIBED` after a resubscription, or None."""
        if self._pubsub is None:
            raise FeedLost("not subscribed")
        try:
            reply = await next_message(self._redis, self._pubsub, wait_s=wait_s)
        except REDIS_DOWN_ERRORS as e:
            raise FeedLost(f"pub/sub connection failed: {e}") from e
        if reply is None:
            return None
        kind = reply.get("type")
        if kind == "message" and _text(reply.get("channel")) == self._marker_channel:
            return CAUGHT_UP if _text(reply.get("data")) == self._marked else None
        if kind == "message":
            data = reply.get("data")
            if isinstance(data, str):  # a client built with decode_responses=True
                return data.encode()
            return data if isinstance(data, bytes) else None
        if kind == "subscribe" and _text(reply.get("channel")) == self._keys.invalidations:
            return SUBSCRIBED
        return None  # pong, unsubscribe, the marker channel's own confirmation

    async def position(self) -> tuple[int, int | None, str | None]:
        """``({ns}:seq or 0, {ns}:epoch or None, {ns}:term or None)``, in one MGET, then the
        catch-up marker published on the primary (executed after the read there)."""
        keys = self._keys
        try:
            raw_seq, raw_epoch, raw_term = await self._redis.mget([keys.seq, keys.epoch, keys.term])
        except REDIS_DOWN_ERRORS as e:
            raise FeedLost(f"cannot read {keys.seq}: {e}") from e
        try:
            await self.mark()
        except FeedLost as e:  # the tail then ends by its window instead
            log.warning(
                "catch-up marker not published; late messages from before start-up are set aside "
                "for three heartbeat intervals instead",
                error=str(e),
                hint="nothing is lost; check that this replica may PUBLISH on its catch-up channel",
            )
        seq = _as_int(raw_seq, keys.seq)
        term = raw_term.decode(errors="replace") if isinstance(raw_term, bytes) else raw_term
        return (seq or 0), _as_int(raw_epoch, keys.epoch), term

    async def mark(self) -> None:
        """Publish a new catch-up marker on the primary (after a resubscription)."""
        token = self._next_mark()
        try:
            await publish(self._redis, self._marker_channel, token)
        except REDIS_DOWN_ERRORS as e:
            raise FeedLost(f"cannot publish on {self._marker_channel}: {e}") from e

    def _next_mark(self) -> str:
        self._marked = str(next(self._marks))
        return self._marked

    async def close(self) -> None:
        """Drop the subscription and its connection (and the switch watch); never raises."""
        task, self._watch_task = self._watch_task, None
        if task is not None and self._watch is not None:
            await stop_watch(self._watch, task)
        await self._close_subscription()

    async def _close_subscription(self) -> None:
        """Drop the subscription and its connection only; never raises."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        try:
            await pubsub.aclose()
        except REDIS_DOWN_ERRORS as e:
            log.debug("closing the pub/sub connection failed", error=str(e))


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("sentinel switch watch died", error=repr(task.exception()))


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _as_int(raw: Any, key: str) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        log.error("counter in redis is not an integer; treating it as unset", key=key)
        return None
