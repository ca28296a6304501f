"""Writes ``{ns}:replica:{id}`` every heartbeat interval, so operators see replicas in Redis.

Why it exists: ``scc replicas`` / ``scc inspect`` read the fleet from Redis alone. The
hash (:class:`shared.status.ReplicaStatus`) carries a TTL of
:func:`shared.status.status_ttl_seconds`, so a replica that dies vanishes by itself; a
replica that stops cleanly deletes its hash.

Invariant: a failing Redis never stops or slows the replica -- a write that fails is
logged once per outage and retried at the next beat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared.clients import REDIS_DOWN_ERRORS
from shared.keys import Keys
from shared.status import ReplicaStatus, status_ttl_seconds

log = structlog.get_logger("service.replica_status")


class ReplicaStatusWriter:
    """Rewrites this replica's heartbeat hash from ``read()`` every ``interval_ms``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        instance_id: str,
        interval_ms: int,
        read: Callable[[], ReplicaStatus],
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._key = keys.replica(instance_id)
        self._interval_s = interval_ms / 1000
        self._ttl_s = status_ttl_seconds(interval_ms)
        self._read = read
        self._sleep = sleep
        self._failing = False
        self.writes = 0
        self.failures = 0

    async def run(self, *, max_beats: int | None = None) -> None:
        """Write, sleep, repeat until cancelled (or ``max_beats`` writes, for tests)."""
        beats = 0
        while max_beats is None or beats < max_beats:
            beats += 1
            await self.write_once()
            await self._sleep(self._interval_s)

    async def write_once(self) -> bool:
        """One HSET + EXPIRE in a transaction; False (logged) if Redis refused."""
        status = self._read()
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, mapping=status.to_hash())  # type: ignore[arg-type]
                pipe.expire(self._key, self._ttl_s)
                await pipe.execute()
        except REDIS_DOWN_ERRORS as e:
            self.failures += 1
            if not self._failing:
                log.warning("cannot write the replica heartbeat", key=self._key, error=str(e))
            self._failing = True
            return False
        if self._failing:
            log.info("replica heartbeat written again", key=self._key)
        self._failing = False
        self.writes += 1
        return True

    async def remove(self, *, within_s: float = 1.0) -> None:
        """Delete the hash at a clean shutdown (best effort, never delays it long)."""
        try:
            async with asyncio.timeout(within_s):
                await self._redis.delete(self._key)
        except REDIS_DOWN_ERRORS as e:  # TimeoutError is an OSError
            log.info("heartbeat hash left to expire", key=self._key, error=str(e) or repr(e))
