"""Hostile blob-event requests against a real redis-server: judged first, stored once, confirmed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI

from service.event_schemas import BLOB_CREATED, MAX_EVENTS
from service.event_sinks import RedisEventSink, StreamLimits
from service.ingesting import IngestCounters, make_events_router
from shared.keys import Keys
from tests.support.redis_server import RedisServer, free_port, redis_binary

pytestmark = pytest.mark.integration
KEYS = Keys("hostile-t")
CONFIGS: list[dict[str, Any]] = [
    {"source_id": "sales", "ingestion": {"landing_container": "landing", "path_pattern": "s/*"}},
]
JSON = {"content-type": "application/json"}


class ListResolver:
    """Configs from a fixed list."""

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        return [c for c in CONFIGS if c["ingestion"]["landing_container"] == container]

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        return next((c for c in CONFIGS if c["source_id"] == source_id), None)


def blob_event(i: int, path: str = "s/f.csv", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"e{i}",
        "topic": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": f"/blobServices/default/containers/landing/blobs/{path}",
        "eventType": BLOB_CREATED,
        "eventTime": "2026-11-24T10:00:00Z",
        "data": {"url": f"https://acct.blob.core.windows.net/landing/{path}"},
        **extra,
    }


def tiny_event(i: int) -> dict[str, Any]:
    """A minimal valid Event Grid event (about 150 bytes), so 5,001 fit in 1 MiB."""
    return {
        "id": str(i),
        "subject": "/blobServices/default/containers/landing/blobs/s/f",
        "eventType": BLOB_CREATED,
        "eventTime": "2026-11-24T10:00:00Z",
    }


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    await c.aclose()


class App:
    """One events router over a RedisEventSink, with its counters and an HTTP client."""

    def __init__(self, http: httpx.AsyncClient, counters: IngestCounters) -> None:
        self.http = http
        self.counters = counters

    async def post(self, body: Any) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.http.post("/events/blob", content=raw, headers=JSON)


async def make_app(redis_client: aioredis.Redis, limits: StreamLimits) -> App:
    counters = IngestCounters()
    sink = RedisEventSink(redis_client, KEYS, limits=limits, trims=counters.trims)
    app = FastAPI()
    app.include_router(make_events_router(resolver=ListResolver(), sink=sink, counters=counters))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return App(http, counters)


@pytest.fixture
async def app(client: aioredis.Redis) -> AsyncIterator[App]:
    built = await make_app(client, StreamLimits(dedup_window_s=60))
    yield built
    await built.http.aclose()


async def test_deeply_nested_event_is_400_and_its_retries_write_nothing(
    app: App, client: aioredis.Redis
) -> None:
    """An event nested 300 deep is a 400 naming it, every retry too, and no neighbour is stored."""
    deep = orjson.dumps(blob_event(2, data="DEEP")).replace(b'"DEEP"', b"[" * 300 + b"]" * 300)
    body = (
        b"[" + orjson.dumps(blob_event(1)) + b"," + deep + b"," + orjson.dumps(blob_event(3)) + b"]"
    )
    for _ in range(5):
        response = await app.post(body)
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith("events[1].data")
    assert await client.xlen(KEYS.events_accepted) == 0
    assert await client.xlen(KEYS.events_dlq) == 0
    assert app.counters.rejections["over_limit"] == 5
    assert app.counters.rejections["unavailable"] == 0


async def test_retried_request_does_not_duplicate_what_was_accepted(
    app: App, client: aioredis.Redis
) -> None:
    """Posting the same batch five times stores each event once and answers alike every time."""
    body = [blob_event(1), blob_event(2, path="x/none.csv"), blob_event(3)]
    answers = [(await app.post(body)).json() for _ in range(5)]
    assert all(a == answers[0] for a in answers)
    assert [r["outcome"] for r in answers[0]["results"]] == [
        "accepted",
        "dead_lettered",
        "accepted",
    ]
    assert await client.xlen(KEYS.events_accepted) == 2
    assert await client.xlen(KEYS.events_dlq) == 1
    assert app.counters.duplicates == 12


async def test_two_replicas_store_one_retried_event_once(client: aioredis.Redis) -> None:
    """The same event posted to two replicas at once is stored once; both answer accepted."""
    first = await make_app(client, StreamLimits(dedup_window_s=60))
    second = await make_app(client, StreamLimits(dedup_window_s=60))
    try:
        a, b = await first.post([blob_event(7)]), await second.post([blob_event(7)])
    finally:
        await first.http.aclose()
        await second.http.aclose()
    assert a.json() == b.json() and a.json()["results"][0]["outcome"] == "accepted"
    assert await client.xlen(KEYS.events_accepted) == 1


async def test_integer_beyond_64_bits_is_kept_exact_not_a_float(
    app: App, client: aioredis.Redis
) -> None:
    """2**64 in an event is stored as the exact string of its digits, never as a float."""
    data = {"size": 2**64, "neg": -(2**63) - 1, "max": 2**64 - 1, "url": "https://a/landing/s/x"}
    response = await app.post(json.dumps([blob_event(1, data=data)]).encode())
    assert response.status_code == 200, response.text
    ((_, fields),) = await client.xrange(KEYS.events_accepted)
    stored = orjson.loads(fields[b"event"])["data"]
    assert stored["size"] == "18446744073709551616"
    assert stored["neg"] == "-9223372036854775809"
    assert stored["max"] == 2**64 - 1


async def test_batch_over_the_event_cap_is_413_and_a_full_one_is_served(
    app: App, client: aioredis.Redis
) -> None:
    """5,001 events are refused with 413 before routing; exactly 5,000 are all stored."""
    over = await app.post([tiny_event(i) for i in range(MAX_EVENTS + 1)])
    assert over.status_code == 413 and "5001 events" in over.json()["detail"]
    assert await client.xlen(KEYS.events_accepted) == 0
    full = await app.post([tiny_event(i) for i in range(MAX_EVENTS)])
    assert full.status_code == 200 and len(full.json()["results"]) == MAX_EVENTS
    assert await client.xlen(KEYS.events_accepted) == MAX_EVENTS


async def test_trimming_counts_what_it_removed_and_what_was_unread(
    client: aioredis.Redis,
) -> None:
    """Over the cap, the oldest go; with a group that read 10, the unread removed are counted."""
    sink = RedisEventSink(client, KEYS, limits=StreamLimits(maxlen=50, consumer_group="ingest"))
    for i in range(20):
        await sink.accepted("s", {"event_id": str(i), "event": b"{}"})
    await client.xgroup_create(KEYS.events_accepted, "ingest", id="0")
    await client.xreadgroup("ingest", "c1", {KEYS.events_accepted: ">"}, count=10)
    for i in range(20, 80):
        await sink.accepted("s", {"event_id": str(i), "event": b"{}"})
    assert await client.xlen(KEYS.events_accepted) == 50
    assert sink.trims.removed["accepted"] == 30
    assert sink.trims.removed_unread["accepted"] == 20  # events 10..29, never delivered
    assert sink.trims.length["accepted"] == 50
    first = await client.xrange(KEYS.events_accepted, count=1)
    assert first[0][1][b"event_id"] == b"30"


async def test_entries_older_than_the_age_cap_are_trimmed_and_counted(
    client: aioredis.Redis,
) -> None:
    """With a one-hour age cap (Redis's clock), entries stamped two hours ago go next write."""
    seconds, micros = await client.time()
    two_hours_ago = seconds * 1000 + micros // 1000 - 7_200_000
    await client.xadd(KEYS.events_dlq, {"event_id": "old"}, id=f"{two_hours_ago}-0")
    sink = RedisEventSink(client, KEYS, limits=StreamLimits(max_age_s=3600))
    await sink.dead_letter("no_matching_config", {"event_id": "new", "event": b"{}"})
    entries = await client.xrange(KEYS.events_dlq)
    assert [f[b"event_id"] for _, f in entries] == [b"new"]
    assert sink.trims.removed["dlq"] == 1


async def test_min_replicas_without_a_replica_is_503_not_replicated(
    client: aioredis.Redis,
) -> None:
    """With SCC_EVENTS_MIN_REPLICAS=1 and no Redis replica, the request is a 503 naming it."""
    built = await make_app(client, StreamLimits(min_replicas=1, replica_timeout_ms=50))
    try:
        response = await built.post([blob_event(1)])
    finally:
        await built.http.aclose()
    assert response.status_code == 503
    assert "confirmed by 0 of 1 Redis replicas" in response.json()["detail"]
    assert built.counters.rejections["not_replicated"] == 1
    assert built.counters.outcomes["accepted"] == 0


async def test_a_retry_after_an_unconfirmed_503_does_not_store_twice(
    client: aioredis.Redis,
) -> None:
    """Stored but unconfirmed (503), then retried where WAIT is off: 200 and one copy."""
    strict = await make_app(
        client, StreamLimits(min_replicas=1, replica_timeout_ms=50, dedup_window_s=60)
    )
    lenient = await make_app(client, StreamLimits(dedup_window_s=60))
    try:
        first = await strict.post([blob_event(1), blob_event(2)])
        retry = await lenient.post([blob_event(1), blob_event(2)])
    finally:
        await strict.http.aclose()
        await lenient.http.aclose()
    assert first.status_code == 503 and retry.status_code == 200
    assert [r["outcome"] for r in retry.json()["results"]] == ["accepted", "accepted"]
    assert await client.xlen(KEYS.events_accepted) == 2
    assert lenient.counters.duplicates == 2


@pytest.fixture
def redis_replica(redis_server: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A second redis-server replicating the test's one, synced; yields its port."""
    binary = redis_binary()
    assert binary is not None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--replicaof", "127.0.0.1", str(redis_server.port), "--loglevel", "warning",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        with redis.Redis(port=port, socket_connect_timeout=0.2) as replica:
            while True:
                assert time.monotonic() < deadline, "the replica did not sync"
                try:
                    if replica.info("replication").get("master_link_status") == "up":
                        break
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


async def test_min_replicas_with_a_confirming_replica_is_200(
    client: aioredis.Redis, redis_replica: int
) -> None:
    """With one connected replica, WAIT confirms and the event is accepted, present on it."""
    built = await make_app(client, StreamLimits(min_replicas=1, replica_timeout_ms=2000))
    try:
        response = await built.post([blob_event(1)])
    finally:
        await built.http.aclose()
    assert response.status_code == 200, response.text
    with redis.Redis(port=redis_replica) as replica:
        assert replica.xlen(KEYS.events_accepted) == 1
