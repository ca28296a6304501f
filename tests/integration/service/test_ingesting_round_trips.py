"""Blob-event requests on a real redis-server: one script call per request, same guarantees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from service.event_sinks import RedisEventSink, StreamLimits
from service.ingesting import make_events_router
from tests.integration.service.test_event_sinks import CountingRedis
from tests.integration.service.test_ingesting_hostile import (
    JSON,
    KEYS,
    App,
    ListResolver,
    blob_event,
    make_app,
)

pytestmark = pytest.mark.integration
#: What the store script runs itself; Redis counts them in ``commandstats`` as well.
SCRIPT_COMMANDS = {"get", "set", "pexpire", "xadd", "xlen", "time", "xrange", "xtrim", "xinfo"}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    await c.aclose()


async def commands_since_reset(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT``, without this probe's own."""
    stats = await client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    return calls


def mixed_batch(start: int) -> list[dict[str, Any]]:
    """Ten events: eight accepted, one unsupported type and one unmatched path (dead letters)."""
    events = [blob_event(start + i, path=f"s/{start + i}.csv") for i in range(8)]
    events.append(blob_event(start + 8, eventType="Microsoft.Storage.BlobDeleted"))
    events.append(blob_event(start + 9, path="elsewhere/x.csv"))
    return events


async def test_a_request_of_ten_events_is_one_script_call(client: aioredis.Redis) -> None:
    """Ten events (accepted and dead-lettered) cost one round trip and one script call."""
    counting = CountingRedis(client)
    app = await make_app(counting, StreamLimits(dedup_window_s=60))  # type: ignore[arg-type]
    assert (await app.post(mixed_batch(0))).status_code == 200  # loads the script once
    await client.config_resetstat()
    counting.pipelines = 0
    response = await app.post(mixed_batch(100))
    assert counting.pipelines == 1
    assert response.status_code == 200, response.text
    outcomes = [r["outcome"] for r in response.json()["results"]]
    assert outcomes == ["accepted"] * 8 + ["dead_lettered"] * 2
    calls = await commands_since_reset(client)
    assert calls.pop("evalsha") == 1
    assert set(calls) <= SCRIPT_COMMANDS, calls  # counted too, but run inside the script
    assert await client.xlen(KEYS.events_accepted) == 16
    assert await client.xlen(KEYS.events_dlq) == 4
    await app.http.aclose()


async def test_same_event_twice_in_one_request_is_stored_once(client: aioredis.Redis) -> None:
    """The second copy of an event within one request is answered as a duplicate, not stored."""
    app = await make_app(client, StreamLimits(dedup_window_s=60))
    other = blob_event(3, eventType="X")
    twice = [blob_event(1), blob_event(2), blob_event(1), other, other]
    response = await app.post(twice)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[2] == results[0] and results[4] == results[3]
    assert await client.xlen(KEYS.events_accepted) == 2
    assert await client.xlen(KEYS.events_dlq) == 1
    assert app.counters.duplicates == 2
    assert app.counters.outcomes == {"accepted": 3, "dead_lettered": 2, "validation": 0}
    await app.http.aclose()


async def test_stored_event_is_byte_for_byte_what_was_received(client: aioredis.Redis) -> None:
    """Non-ASCII text, escapes, control characters and quotes survive the batched store exactly."""
    app = await make_app(client, StreamLimits())
    odd = blob_event(1, note='üñï "q" \\ \n\t\u0001 \u2028 😀 </script>')
    assert (await app.post([odd])).status_code == 200
    ((_, fields),) = await client.xrange(KEYS.events_accepted)
    assert fields[b"event"] == orjson.dumps(odd)
    assert fields[b"source_id"] == b"sales" and fields[b"event_id"] == b"e1"
    await app.http.aclose()


async def test_a_batch_over_the_cap_is_trimmed_and_counted(client: aioredis.Redis) -> None:
    """Twelve events into a stream capped at five leave five, seven counted removed and unread."""
    await client.xgroup_create(KEYS.events_accepted, "ingest", id="0", mkstream=True)
    app = await make_app(client, StreamLimits(maxlen=5, consumer_group="ingest"))
    events = [blob_event(i, path=f"s/{i}.csv") for i in range(12)]
    assert (await app.post(events)).status_code == 200
    entries = await client.xrange(KEYS.events_accepted)
    assert [e[1][b"event_id"] for e in entries] == [f"e{i}".encode() for i in range(7, 12)]
    trims = app.counters.trims
    assert (trims.removed["accepted"], trims.removed_unread["accepted"]) == (7, 7)
    assert trims.length["accepted"] == 5
    assert trims.removed["dlq"] == 0
    await app.http.aclose()


async def test_a_failed_stream_fails_the_request_and_a_retry_stores_each_event_once(
    client: aioredis.Redis,
) -> None:
    """A dead-letter stream Redis refuses is a 503; the retry, once fixed, adds only the rest."""
    await client.set(KEYS.events_dlq, "not a stream")
    app: App = await make_app(client, StreamLimits(dedup_window_s=60))
    batch = mixed_batch(0)
    assert (await app.post(batch)).status_code == 503
    assert await client.xlen(KEYS.events_accepted) == 8  # stored, not acknowledged
    await client.delete(KEYS.events_dlq)
    retry = await app.post(batch)
    assert retry.status_code == 200, retry.text
    assert await client.xlen(KEYS.events_accepted) == 8
    assert await client.xlen(KEYS.events_dlq) == 2
    await app.http.aclose()


class FlakyResolver(ListResolver):
    """Configs from the fixed list, but the config store is down for one container."""

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        if container == "down":
            raise ConnectionError("config store unreachable")
        return await super().configs_for_container(container)


async def test_a_config_store_failure_for_one_event_writes_no_event(
    client: aioredis.Redis,
) -> None:
    """Every event is routed before any is stored: one failed lookup is a 503, nothing written."""
    sink = RedisEventSink(client, KEYS, limits=StreamLimits(dedup_window_s=60))
    app = FastAPI()
    router = make_events_router(resolver=FlakyResolver(), sink=sink, retry_on=(ConnectionError,))
    app.include_router(router)
    down = blob_event(99)
    down["subject"] = "/blobServices/default/containers/down/blobs/s/x.csv"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        body = orjson.dumps([*mixed_batch(0)[:5], down, *mixed_batch(10)[:4]])
        response = await http.post("/events/blob", content=body, headers=JSON)
    assert response.status_code == 503, response.text
    assert await client.xlen(KEYS.events_accepted) == 0
    assert await client.xlen(KEYS.events_dlq) == 0


async def test_the_byte_cap_holds_when_batches_cross_the_check(client: aioredis.Redis) -> None:
    """Batches of 50 skip over multiples of 64, yet the byte cap is checked and trims count."""
    app = await make_app(client, StreamLimits(max_bytes=24_000))
    for r in range(6):
        events = [blob_event(r * 50 + i, path=f"s/{r * 50 + i}.csv") for i in range(50)]
        assert (await app.post(events)).status_code == 200
    length = await client.xlen(KEYS.events_accepted)
    assert length < 300
    assert app.counters.trims.removed["accepted"] == 300 - length
    assert app.counters.trims.length["accepted"] == length
    used = await client.memory_usage(KEYS.events_accepted)
    assert used is not None and used < 24_000 * 2  # at most 63 entries + one batch over
    await app.http.aclose()
