"""A watcher through a Redis failover: leave the demoted primary at once, then heartbeat early.

Why a module of its own: with a ``redis+sentinel://`` URL a watcher follows Sentinel's
``+switch-master`` (:class:`~shared.sentinel_watching.SwitchWatch`), which closes every
Redis connection the moment a replica is promoted -- a demoted primary keeps accepting
writes for seconds, and each of them would be lost. Replicas move their subscription at
the same moment, so a message the leader publishes while they move can be missed; the
leader therefore heartbeats right after a switch (:data:`SWITCH_HEARTBEATS_S`), and a
replica hearing a seq ahead of its own reloads at once instead of a heartbeat later.

Invariant: the watch is stopped by closing its connections, never by a cancel (a cancel
that meets redis-py's read timeout on Python 3.11 can be swallowed), and a heartbeat is
only ever sent through the fenced publisher, for the term currently held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from shared.clients import SentinelRedis
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.sentinel_watching import SwitchWatch, stop_watch
from watcher.electing import Leadership
from watcher.errors import NotLeader
from watcher.publishing import Publisher
from watcher.timing import wait_event

#: Extra heartbeats after a Redis primary switch (seconds after it, then after that one).
SWITCH_HEARTBEATS_S: Final = (0.2, 0.3)


class SwitchFollower:
    """Runs a :class:`SwitchWatch` and the early heartbeats after each switch."""

    def __init__(
        self,
        redis: SentinelRedis,
        keys: Keys,
        *,
        leadership: Leadership,
        publisher: Publisher,
        healthy: Callable[[], bool],
    ) -> None:
        self._redis, self._keys = redis, keys
        self._leadership, self._publisher, self._healthy = leadership, publisher, healthy

    async def run(self, until: asyncio.Event) -> None:
        """Follow switches until ``until``; a watch that died re-raises its error."""
        switched = asyncio.Event()
        watch = SwitchWatch(self._redis, lambda _: switched.set(), record_in=self._keys.failover)
        task = asyncio.create_task(watch.run(), name="watcher.sentinel-watch")
        ended = asyncio.create_task(until.wait(), name="watcher.sentinel-until")
        nudges = asyncio.create_task(
            self._beat_after_switches(switched, until), name="watcher.switch-heartbeats"
        )
        try:
            await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for helper in (ended, nudges):
                helper.cancel()
            await asyncio.gather(ended, nudges, return_exceptions=True)
            await stop_watch(watch, task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    async def _beat_after_switches(self, switched: asyncio.Event, until: asyncio.Event) -> None:
        while not until.is_set():
            if not await wait_event(switched, 0.5):
                continue
            switched.clear()
            for delay in SWITCH_HEARTBEATS_S:
                await asyncio.sleep(delay)
                term = self._leadership.term
                if term is None or not self._leadership.is_leader or not self._healthy():
                    continue
                with contextlib.suppress(StoreUnavailable, NotLeader, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._publisher.heartbeat(term)
