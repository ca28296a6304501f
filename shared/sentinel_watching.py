"""Hear Sentinel's ``+switch-master`` at once, so no process keeps talking to a demoted primary.

Why a module of its own: redis-py re-asks the sentinels for the primary only when a
connection is (re)made or a write is refused with ``READONLY``. After a planned failover
the old primary stays up and *writable* for seconds (until Sentinel reconfigures it), so a
client that only reacts to errors keeps writing there, and every such write is lost when
it resyncs from the new primary. The sentinels announce each promotion on their
``+switch-master`` channel; :class:`SwitchWatch` subscribes on every sentinel of the group
and, once per new primary, closes every connection of the client's pool -- in use or idle,
pub/sub included -- so the next command asks the sentinels and reaches the new primary,
and a subscriber sees its resubscription.

Invariant: every promotion that a reachable sentinel announces drops the connections and
reaches ``on_switch`` exactly once (three sentinels announce the same switch; repeats of
the address last reported are dropped), and the watch never ends on a Redis error: a lost
sentinel connection is re-made with jittered backoff (tenacity) and re-subscribed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from redis.typing import EncodableT, FieldT
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from shared.clients import REDIS_DOWN_ERRORS, SentinelRedis

#: The channel on which every sentinel announces a promotion.
SWITCH_CHANNEL: Final = "+switch-master"

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
        #: Promotions reported so far.
        self.switches = 0

    async def run(self) -> None:
        """Watch until cancelled (one subscription per sentinel)."""
        async with asyncio.TaskGroup() as group:
            for index, sentinel in enumerate(self._sentinels):
                group.create_task(self._follow(sentinel), name=f"sentinel-watch-{index}")

    async def _follow(self, sentinel: aioredis.Redis) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(REDIS_DOWN_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._listen(sentinel)

    async def _listen(self, sentinel: aioredis.Redis) -> None:
        pubsub: Any = sentinel.pubsub()
        try:
            await pubsub.subscribe(SWITCH_CHANNEL)
            while True:
                reply = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if reply is not None and reply.get("type") == "message":
                    await self._heard(reply.get("data"), sentinel)
        finally:
            try:
                await asyncio.shield(pubsub.aclose())
            except REDIS_DOWN_ERRORS:
                pass

    async def _heard(self, data: Any, sentinel: aioredis.Redis) -> None:
        switch = parse_switch(data) if isinstance(data, bytes | str) else None
        if switch is None or switch.master != self._master or switch.new == self._last:
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
        try:
            await self._client.connection_pool.disconnect()
        except REDIS_DOWN_ERRORS as e:
            log.debug("closing connections to the old primary failed", error=str(e))
        if self._record_in is not None:
            await self._record(switch)
        if self._on_switch is not None:
            self._on_switch(switch)

    async def _record(self, switch: Switch) -> None:
        """Write the switch to the new primary, for ``scc inspect`` (best effort)."""
        by = self._client.connection_pool.connection_kwargs.get("client_name") or ""
        fields: dict[FieldT, EncodableT] = {
            "at": repr(switch.heard_at),
            "primary": f"{switch.new[0]}:{switch.new[1]}",
            "previous": f"{switch.old[0]}:{switch.old[1]}",
            "by": str(by),
        }
        assert self._record_in is not None
        try:
            await self._client.hset(self._record_in, mapping=fields)
        except REDIS_DOWN_ERRORS as e:
            log.warning("could not record the primary switch", key=self._record_in, error=str(e))
