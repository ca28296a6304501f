"""Instant graceful handover: a standby hears a released lease and takes it at once.

Why: without this a standby learns that the lease is free only on its next poll (every
0.2 x TTL), so every rolling restart leaves replicas a second or more without news. A
leader that stops releases its lease and names itself on ``{ns}:handover``
(:meth:`watcher.electing.RedisLease.release`); :class:`HandoverListener` subscribes to
that channel and wakes the elector, which tries the lease immediately.

Invariant: the listener only ever *wakes* the elector -- the lease script still decides
who leads, so a stray or replayed announcement costs one extra acquisition attempt, never
a second leader. It never ends on a Redis error (tenacity backoff, resubscribe), and it is
stopped by a flag it polls, not by cancelling a pub/sub read (on Python 3.11 such a cancel
can be swallowed by redis-py's read timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from shared.channels import next_message, subscribe
from shared.clients import REDIS_DOWN_ERRORS

#: How often a waiting listener looks at its stop flag.
POLL_S: Final = 0.2
#: Longest a stopping listener waits for its connection to close.
CLOSE_TIMEOUT_S: Final = 1.0

log = structlog.get_logger("watcher.handing_over")


class HandoverListener:
    """Calls ``wake()`` whenever another instance announces a released lease."""

    def __init__(
        self, redis: aioredis.Redis, channel: str, *, instance_id: str, wake: Callable[[], None]
    ) -> None:
        self._redis, self._channel, self._id, self._wake = redis, channel, instance_id, wake
        #: Announcements heard from other instances.
        self.heard = 0

    async def run(self, until: asyncio.Event) -> None:
        """Listen until ``until`` is set."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(REDIS_DOWN_ERRORS),
            stop=lambda _: until.is_set(),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._listen(until)
        except REDIS_DOWN_ERRORS:
            if not until.is_set():
                raise

    async def _listen(self, until: asyncio.Event) -> None:
        pubsub: Any = self._redis.pubsub()
        try:
            await subscribe(self._redis, pubsub, self._channel)
            while not until.is_set():
                reply = await next_message(
                    self._redis, pubsub, ignore_subscribe_messages=True, wait_s=POLL_S
                )
                if reply is not None and reply.get("type") == "message":
                    self._heard(reply.get("data"))
        finally:
            try:
                await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT_S)
            except (*REDIS_DOWN_ERRORS, TimeoutError):
                pass

    def _heard(self, data: Any) -> None:
        sender = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        if sender == self._id:
            return
        self.heard += 1
        log.info("lease released by the leader; taking over", previous=sender)
        self._wake()
