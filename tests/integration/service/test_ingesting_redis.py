"""Blob events through the router into real Redis streams: fields, cap, outage → 503, fuzzing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.event_schemas import BLOB_CREATED
from service.ingesting import IngestCounters, RedisEventSink, make_events_router
from shared.keys import Keys
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration
KEYS = Keys("ingest-t")
CONFIGS: list[dict[str, Any]] = [
    {"source_id": "sales", "ingestion": {"landing_container": "landing", "path_pattern": "s/*"}},
    {"source_id": "off", "enabled": False, "ingestion": {"landing_container": "cold"}},
]


class ListResolver:
    """Configs from a fixed list (the cache's read-through is not under test here)."""

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        return [c for c in CONFIGS if c["ingestion"]["landing_container"] == container]

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        return next((c for c in CONFIGS if c["source_id"] == source_id), None)


def blob_event(
    i: int, container: str = "landing", path: str = "s/f.csv", **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"e{i}",
        "topic": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": BLOB_CREATED,
        "eventTime": "2026-11-24T10:00:00Z",
        "data": {"url": f"https://acct.blob.core.windows.net/{container}/{path}"},
        "dataVersion": "",
        "metadataVersion": "1",
        **extra,
    }


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # Two quick retries instead of redis-py's default ten, so the outage test stays fast.
    client = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 2)
    )
    yield client
    await client.aclose()


@pytest.fixture
async def http(
    redis_client: aioredis.Redis,
) -> AsyncIterator[tuple[httpx.AsyncClient, IngestCounters]]:
    counters = IngestCounters()
    app = FastAPI()
    sink = RedisEventSink(redis_client, KEYS)
    app.include_router(make_events_router(resolver=ListResolver(), sink=sink, counters=counters))
    transport = httpx.ASGITransport(app=app)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c, counters


async def test_events_land_in_the_right_stream_with_their_fields(
    http: tuple[httpx.AsyncClient, IngestCounters], redis_client: aioredis.Redis
) -> None:
    """Accepted events land in events:accepted with source_id, dead letters in events:dlq."""
    client, _ = http
    events = [
        blob_event(1),
        blob_event(2, container="cold", path="x"),
        blob_event(3, eventType="Nope"),
    ]
    response = await client.post("/events/blob", content=orjson.dumps(events))
    assert response.status_code == 200
    ((_, accepted),) = await redis_client.xrange(KEYS.events_accepted)
    assert list(accepted)[:7] == [
        b"source_id",
        b"event_id",
        b"event_type",
        b"subject",
        b"container",
        b"path",
        b"received_at",
    ]
    assert accepted[b"source_id"] == b"sales" and accepted[b"event_id"] == b"e1"
    assert (accepted[b"container"], accepted[b"path"]) == (b"landing", b"s/f.csv")
    assert float(accepted[b"received_at"]) > 1.7e9
    assert orjson.loads(accepted[b"event"]) == events[0]
    dlq = await redis_client.xrange(KEYS.events_dlq)
    assert [(f[b"reason"], f[b"event_id"]) for _, f in dlq] == [
        (b"disabled", b"e2"),
        (b"unsupported_event_type", b"e3"),
    ]
    assert dlq[0][1][b"source_id"] == b"off" and b" " not in dlq[1][1][b"event"]


async def test_streams_are_capped_at_maxlen(redis_client: aioredis.Redis) -> None:
    """XADD trims with MAXLEN ~: the stream stays within the cap plus one macro node (100)."""
    sink = RedisEventSink(redis_client, KEYS, maxlen=10)
    for i in range(400):
        await sink.dead_letter("no_matching_config", {"event_id": str(i), "event": {}})
    length = await redis_client.xlen(KEYS.events_dlq)
    assert 10 <= length <= 110
    last = await redis_client.xrevrange(KEYS.events_dlq, count=1)
    assert last[0][1][b"event_id"] == b"399"  # trimming drops the oldest, never the newest


async def test_redis_down_is_503_and_nothing_is_reported_accepted(
    http: tuple[httpx.AsyncClient, IngestCounters],
    redis_client: aioredis.Redis,
    redis_server: RedisServer,
) -> None:
    """With Redis stopped the request gets 503 (sender retries) and no event counts as accepted."""
    client, counters = http
    redis_server.stop()
    response = await client.post("/events/blob", content=orjson.dumps([blob_event(1)]))
    assert response.status_code == 503
    assert response.json() == {"detail": "events store unavailable; retry later"}
    assert counters.outcomes["accepted"] == 0 and counters.rejections["unavailable"] == 1
    redis_server.start()
    retried = await client.post("/events/blob", content=orjson.dumps([blob_event(1)]))
    assert retried.status_code == 200 and await redis_client.xlen(KEYS.events_accepted) == 1


def _dumps(value: Any) -> bytes:
    # The standard library, not orjson: it also writes what orjson refuses to read
    # (integers over 64 bits, Infinity, lone surrogates), which the endpoint must refuse.
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
event_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=5) | json_values,
        "subject": st.sampled_from(["/blobServices/default/containers/landing/blobs/s/x", ""])
        | st.text(max_size=20),
        "eventType": st.sampled_from(
            [BLOB_CREATED, "Microsoft.EventGrid.SubscriptionValidationEvent"]
        )
        | json_values,
        "eventTime": st.just("2026-11-24T10:00:00Z") | json_values,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "url": st.text(max_size=30),
                "source_id": json_values,
                "validationCode": json_values,
            },
        )
        | json_values,
        "specversion": st.just("1.0") | json_values,
        "type": st.just(BLOB_CREATED) | json_values,
        "source": st.text(max_size=5),
        "sourceid": st.sampled_from(["sales", "off", "ghost"]) | json_values,
    },
)
bodies = (
    st.lists(event_fields, max_size=3).map(_dumps)
    | event_fields.map(_dumps)
    | json_values.map(_dumps)
    | st.binary(max_size=64)
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    content_type=st.sampled_from(
        [
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "text/plain",
        ]
    ),
)
async def test_random_bodies_never_yield_a_server_error(
    http: tuple[httpx.AsyncClient, IngestCounters], body: bytes, content_type: str
) -> None:
    """Whatever JSON (or bytes) arrives, the answer is 200 or a 4xx, never a 5xx, with Redis up."""
    client, _ = http
    response = await client.post(
        "/events/blob", content=body, headers={"content-type": content_type}
    )
    assert response.status_code in {200, 400, 415}, response.text
    if response.status_code == 200:
        assert set(response.json()) <= {"results", "validationResponse"}
