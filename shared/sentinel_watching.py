"""Hear Sentinel's ``+switch-master`` at once, so no process keeps talking to a demoted primary.

Why a module of its own: redis-py re-asks the sentinels for the primary only when a
connection is (re)made or a write is refused with ``READONLY``. After a planned failover
the old primary stays up and *writable* for seconds (until Sentinel reconfigures it), so a
client that only reacts to errors keeps writing there, and every such write is lost when
it resyncs from the new primary. The sentinels announce each promotion on their
``+switch-master`` channel; :class:`SwitchWatch` subscribes on every sentinel of the group
and closes every connection of the client's pool that is on the demoted primary -- in use
or idle, pub/sub included, or connecting at that moment -- so the next command asks the
sentinels and reaches the new primary, and a subscriber sees its resubscription.

Invariant: every announcement of a promotion that a reachable sentinel makes drops the
connections on the old primary (no connection stays there or comes up there for
:data:`~shared.clients.DEMOTED_FOR_S`), and each promotion reaches ``on_switch`` exactly
once (three sentinels announce the same switch; repeats of the address last reported are
not reported again), and the watch never ends on a Redis error: a lost
sentinel connection is re-made with jittered backoff (tenacity) and re-subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from redis.typing import EncodableT, FieldT
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from shared.clients import REDIS_DOWN_ERRORS, FollowingPool, SentinelRedis

#: The channel on which every sentinel announces a promotion.
SWITCH_CHANNEL: Final = "+switch-master"
#: Longest a stopping watch waits for a sentinel connection to close.
CLOSE_TIMEOUT_S: Final = 1.0

log = structlog.get_logger("shared.sentinel_watching")


@dataclass(frozen=True, slots=True)
class Switch:
    """One announced promotion: the primary before and after, and when we heard it."""

    master: str
    old: tuple[str, int]
    new: tuple[str, int]
    heard_at: float


def parse_switch(data: bytes | str) -> Switch | None:
    """``<name> <old-ip> <old-port> <new-ip> <new-port>`` as a :class:`Switch` (None if not)."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    parts = text.split()
    if len(parts) != 5 or not parts[2].isdigit() or not parts[4].isdigit():
        return None
    return Switch(
        master=parts[0],
        old=(parts[1], int(parts[2])),
        new=(parts[3], int(parts[4])),
        heard_at=time.time(),
    )


class SwitchWatch:
    """Follows ``+switch-master`` on every sentinel of ``client``'s group; see the module."""

    def __init__(
        self,
        client: SentinelRedis,
        on_switch: Callable[[Switch], None] | None = None,
        *,
        record_in: str | None = None,
    ) -> None:
        """``record_in``: a hash key (``Keys.failover``) that each switch heard is written to."""
        self._client = client
        self._record_in = record_in
        self._sentinels: list[aioredis.Redis] = list(client.sentinels.sentinels)
        self._master = client.master_name
        self._on_switch = on_switch
        self._last: tuple[str, int] | None = None
        self._stopping = False
        self._pubsubs: set[Any] = set()
        #: Promotions reported so far.
        self.switches = 0

    async def run(self) -> None:
        """Watch until :meth:`stop` (one subscription per sentinel); may run again after."""
        self._stopping = False
        async with asyncio.TaskGroup() as group:
            for index, sentinel in enumerate(self._sentinels):
                group.create_task(self._follow(sentinel), name=f"sentinel-watch-{index}")

    async def stop(self) -> None:
        """End :meth:`run` soon: close the sentinel connections under the readers.

        Closing, not cancelling: on Python 3.11 a cancel that meets redis-py's read timeout
        can be swallowed, leaving the reader blocked on its socket for good.
        """
        self._stopping = True
        for pubsub in list(self._pubsubs):
            connection = getattr(pubsub, "connection", None)
            if connection is not None:
                with contextlib.suppress(*REDIS_DOWN_ERRORS):
                    await connection.disconnect(nowait=True)

    async def _follow(self, sentinel: aioredis.Redis) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(REDIS_DOWN_ERRORS),
            stop=lambda _: self._stopping,
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._listen(sentinel)
        except REDIS_DOWN_ERRORS:
            if not self._stopping:
                raise

    async def _listen(self, sentinel: aioredis.Redis) -> None:
        pubsub: Any = sentinel.pubsub()
        self._pubsubs.add(pubsub)
        try:
            await pubsub.subscribe(SWITCH_CHANNEL)
            while not self._stopping:
                reply = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if reply is not None and reply.get("type") == "message":
                    await self._heard(reply.get("data"), sentinel)
        finally:
            # Bounded: redis-py's PubSub.aclose can wait on a lock or a closing transport
            # (redis-py issue #3941), and a watch that is being stopped must stop.
            self._pubsubs.discard(pubsub)
            try:
                await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT_S)
            except (*REDIS_DOWN_ERRORS, TimeoutError):
                pass

    async def _heard(self, data: Any, sentinel: aioredis.Redis) -> None:
        switch = parse_switch(data) if isinstance(data, bytes | str) else None
        if switch is None or switch.master != self._master:
            return
        # Every announcement (three sentinels announce each switch, seconds apart) leaves
        # the old primary again: idempotent, and it catches any connection that got there.
        await self.leave(switch.old)
        if switch.new == self._last:
            return
        self._last = switch.new
        self.switches += 1
        # Ask the announcing sentinel first: the others may name the old primary a while.
        group = self._client.sentinels.sentinels
        if sentinel in group:
            group.remove(sentinel)
            group.insert(0, sentinel)
        log.warning(
            "redis primary switched",
            master=switch.master,
            old=f"{switch.old[0]}:{switch.old[1]}",
            new=f"{switch.new[0]}:{switch.new[1]}",
        )
        if self._record_in is not None:
            await self._record(switch)
        if self._on_switch is not None:
            self._on_switch(switch)

    async def leave(self, old: tuple[str, int]) -> None:
        """Close every connection of the client on the demoted ``old`` primary, and refuse it.

        Only connections on ``old`` are closed, whether idle, in use (a subscription) or
        coming up at this moment (:class:`~shared.clients.FollowingConnection`); ones that
        already reached the new primary are kept. Deciding by the pool's last-asked primary
        instead is wrong: a connection made just before the announcement arrives moves
        that to the new primary while the in-use connections stay on the old one.
        """
        pool = self._client.connection_pool
        try:
            if isinstance(pool, FollowingPool):
                await pool.leave(old)
            else:
                await pool.disconnect()
        except REDIS_DOWN_ERRORS as e:
            log.debug("closing connections to the old primary failed", error=str(e))

    async def _record(self, switch: Switch) -> None:
        """Write the switch to the new primary, for ``scc inspect`` (best effort)."""
        by = self._client.connection_pool.connection_kwargs.get("client_name") or ""
        primary = f"{switch.new[0]}:{switch.new[1]}"
        fields: dict[FieldT, EncodableT] = {
            "at": repr(switch.heard_at),
            "primary": primary,
            "previous": f"{switch.old[0]}:{switch.old[1]}",
            "by": str(by),
        }
        assert self._record_in is not None
        try:
            if await self._client.hget(self._record_in, "primary") == primary.encode():
                return  # another process (or a late sentinel) recorded this switch already
            await self._client.hset(self._record_in, mapping=fields)
        except REDIS_DOWN_ERRORS as e:
            log.warning("could not record the primary switch", key=self._record_in, error=str(e))


async def stop_watch(watch: SwitchWatch, task: asyncio.Task[None]) -> None:
    """Stop ``watch`` (running as ``task``) by closing its connections; cancel as a last resort."""
    await watch.stop()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
