"""Instant graceful handover against a real redis-server: a stopping leader hands over at once.

With a 30 s TTL a standby polls every 6 s; the test stops the leader just after the
standby's poll, so only the ``{ns}:handover`` announcement can make it take over in time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.watcher.rig import collecting, run_watcher, settings_for
from tests.unit.watcher.fakes import FakeSource

pytestmark = pytest.mark.integration
TTL_MS = 30_000
#: Far below the 6 s standby poll this TTL gives, far above a handover's milliseconds.
TAKEOVER_WITHIN_S = 1.5


@pytest.mark.timeout(60)
async def test_a_standby_takes_over_at_once_when_the_leader_stops(redis_url: str) -> None:
    """SIGTERM-like stop: the standby leads and publishes within moments, not at its poll."""
    source = FakeSource()
    a_settings = settings_for(redis_url, "mongodb://unused", "a", ttl_ms=TTL_MS)
    b_settings = settings_for(redis_url, "mongodb://unused", "b", ttl_ms=TTL_MS)
    async with run_watcher(a_settings, source=source) as a:
        await asyncio.wait_for(a.watcher.leadership.wait_for(True), 5)
        async with run_watcher(b_settings, source=source) as b, collecting(redis_url) as seen:
            elector = b.watcher.elector
            while elector.alive_at is None:  # noqa: ASYNC110 -- polling the elector's clock
                await asyncio.sleep(0.01)
            polled = elector.alive_at
            while elector.alive_at == polled:  # noqa: ASYNC110 -- b tried, failed, waits 6 s
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            stopped_at = time.monotonic()
            await a.shutdown()
            await asyncio.wait_for(b.watcher.leadership.wait_for(True), TAKEOVER_WITHIN_S)
            term = b.watcher.leadership.term
            assert term is not None
            deadline = stopped_at + TAKEOVER_WITHIN_S
            while not [m for m in seen.messages if m.epoch == term.epoch]:
                assert time.monotonic() < deadline, "the new leader has not published"
                await asyncio.sleep(0.005)
