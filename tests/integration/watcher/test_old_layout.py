"""A watcher that finds only keys of the layout before ``{ns}`` hash tags says so, once."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import structlog

from shared.keys import LegacyKeys
from tests.integration.watcher.rig import KEYS, NAMESPACE, run_watcher, settings_for
from tests.unit.watcher.fakes import FakeSource


async def _start_and_collect(redis_url: str) -> tuple[list[dict[str, object]], int]:
    settings = settings_for(redis_url, "mongodb://unused", "a")
    with structlog.testing.capture_logs() as logs:
        async with run_watcher(settings, source=FakeSource()) as a:
            await asyncio.wait_for(a.watcher.leadership.wait_for(True), 5)
            counted = a.watcher.stats.errors["OldKeyLayout"]
    return [e for e in logs if "migrate-keys" in str(e.get("event"))], counted


async def test_old_layout_only_gives_one_warning_naming_the_migration(redis_url: str) -> None:
    """Old seq/resume and no new keys: one warning naming scc migrate-keys, counted once."""
    client = aioredis.Redis.from_url(redis_url)
    old = LegacyKeys(NAMESPACE)
    try:
        await client.set(old.seq, 41)
        await client.hset(old.resume, mapping={"token": '{"_data": "82"}', "epoch": "3"})
        lines, counted = await _start_and_collect(redis_url)
        assert len(lines) == 1 and lines[0]["log_level"] == "warning", lines
        assert lines[0]["old_keys"] == [old.seq, old.resume] and counted == 1
        # Once the new layout exists (migrated, or this leader wrote it), nothing is said.
        assert await client.exists(KEYS.epoch) == 1
        lines, counted = await _start_and_collect(redis_url)
        assert lines == [] and counted == 0
    finally:
        await client.aclose()
