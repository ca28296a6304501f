"""``POST /events/blob`` over ASGI with fakes: routing, handshakes, 400/401/413/503, counters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry.metrics import CallbackOptions
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from service.event_schemas import BLOB_CREATED, SUBSCRIPTION_VALIDATION
from service.ingesting import (
    EventSinkUnavailable,
    IngestCounters,
    make_events_router,
)
from shared.telemetry import gauge_callback

TOKEN = "s3cret-token-0123456789"


def subject(path: str, container: str = "landing") -> str:
    return f"/blobServices/default/containers/{container}/blobs/{path}"


def eg_event(i: int, path: str = "sales/jan.csv", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"e{i}",
        "topic": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": subject(path),
        "eventType": BLOB_CREATED,
        "eventTime": "2026-11-24T10:00:00Z",
        "data": {},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    event.update(overrides)
    return event


def cloud_event(i: int, path: str = "sales/jan.csv", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "type": BLOB_CREATED,
        "source": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "id": f"c{i}",
        "subject": subject(path),
        "data": {},
    }
    event.update(overrides)
    return event


CONFIGS: list[dict[str, Any]] = [
    {"source_id": "all", "ingestion": {"landing_container": "landing"}},
    {
        "source_id": "sales",
        "ingestion": {"landing_container": "landing", "path_pattern": "sales/*"},
    },
    {"source_id": "off", "enabled": False, "ingestion": {"landing_container": "cold"}},
    {"source_id": "t1", "ingestion": {"landing_container": "tie", "path_pattern": "a*"}},
    {"source_id": "t2", "ingestion": {"landing_container": "tie", "path_pattern": "a?"}},
]


class FakeResolver:
    """Configs from a list; ``fail`` makes every lookup raise it."""

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        self.configs = configs
        self.fail: Exception | None = None

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        if self.fail is not None:
            raise self.fail
        return [c for c in self.configs if c["ingestion"]["landing_container"] == container]

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        if self.fail is not None:
            raise self.fail
        return next((c for c in self.configs if c["source_id"] == source_id), None)


class PeekingResolver(FakeResolver):
    """Answers from memory for the configs in ``in_memory`` (as the replica's cache does
    while live); counts the lookups that had to be awaited."""

    def __init__(self, configs: list[dict[str, Any]], in_memory: set[str]) -> None:
        super().__init__(configs)
        self.in_memory = in_memory
        self.awaited: list[str] = []

    def peek(self, source_id: str) -> dict[str, Any] | None:
        return (
            next((c for c in self.configs if c["source_id"] == source_id), None)
            if (source_id in self.in_memory)
            else None
        )

    def peek_container(self, container: str) -> list[dict[str, Any]] | None:
        return (
            [c for c in self.configs if c["ingestion"]["landing_container"] == container]
            if container in self.in_memory
            else None
        )

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        self.awaited.append(container)
        return await super().configs_for_container(container)

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        self.awaited.append(source_id)
        return await super().get_config_by_source_id(source_id)


class FakeSink:
    """Records writes, remembering answers by dedup key; ``fail_*`` make those writes raise."""

    def __init__(self) -> None:
        self.accepted_events: list[tuple[str, dict[str, Any]]] = []
        self.dead_letters: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, bytes] = {}
        self.fail_accepted: Exception | None = None
        self.fail_dead_letter: Exception | None = None

    async def accepted(
        self, source_id: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        if self.fail_accepted is not None:
            raise self.fail_accepted
        return self._store(self.accepted_events, source_id, event, dedup_key, answer)

    async def dead_letter(
        self, reason: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        if self.fail_dead_letter is not None:
            raise self.fail_dead_letter
        return self._store(self.dead_letters, reason, event, dedup_key, answer)

    def _store(
        self,
        into: list[tuple[str, dict[str, Any]]],
        tag: str,
        event: dict[str, Any],
        dedup_key: str,
        answer: bytes,
    ) -> bytes | None:
        if dedup_key and dedup_key in self.answers:
            return self.answers[dedup_key]
        if dedup_key:
            self.answers[dedup_key] = answer
        into.append((tag, {**event, "event": orjson.loads(event["event"])}))
        return None


class Rig:
    """A FastAPI app holding only the events router, its fakes, counters and a client."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, counters: IngestCounters) -> None:
        self.app = app
        self.client = client
        self.counters = counters
        self.resolver = FakeResolver(CONFIGS)
        self.sink = FakeSink()

    async def post(
        self, document: Any, *, content_type: str = "application/json", **kw: Any
    ) -> httpx.Response:
        content = document if isinstance(document, bytes) else orjson.dumps(document)
        headers = {"content-type": content_type, **kw.pop("headers", {})}
        return await self.client.post("/events/blob", content=content, headers=headers, **kw)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    clients: list[httpx.AsyncClient] = []

    async def build(resolver: FakeResolver | None = None, **options: Any) -> Rig:
        app = FastAPI()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        rig = Rig(app, client, IngestCounters())
        rig.resolver = resolver or rig.resolver
        router = make_events_router(
            resolver=rig.resolver, sink=rig.sink, counters=rig.counters, **options
        )
        app.include_router(router)
        return rig

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
async def rig(make_rig: MakeRig) -> Rig:
    return await make_rig(clock=lambda: 1700000000.5)


async def test_blob_created_is_accepted_for_the_most_specific_config(rig: Rig) -> None:
    """A matching BlobCreated event is written as accepted with its record and reported so."""
    response = await rig.post([eg_event(1)])
    assert response.status_code == 200
    assert response.json() == {
        "results": [{"id": "e1", "outcome": "accepted", "source_id": "sales"}]
    }
    ((source_id, record),) = rig.sink.accepted_events
    assert source_id == "sales"
    assert record == {
        "event_id": "e1",
        "event_type": BLOB_CREATED,
        "subject": subject("sales/jan.csv"),
        "container": "landing",
        "path": "sales/jan.csv",
        "received_at": "1700000000.500000",
        "event": eg_event(1),
    }
    assert rig.counters.outcomes["accepted"] == 1


async def test_every_event_gets_an_outcome_in_order(rig: Rig) -> None:
    """A mixed batch answers one result per event, dead letters carrying the bounded reason."""
    events = [
        eg_event(0, path="hr/x.csv"),
        eg_event(1, eventType="Microsoft.Storage.BlobDeleted"),
        eg_event(2, subject=subject("f", "nowhere")),
        eg_event(3, subject=subject("f", "cold")),
        eg_event(4, subject=subject("ab", "tie")),
        eg_event(5, subject="/not/a/blob", data={}),
    ]
    response = await rig.post(events)
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": "e0", "outcome": "accepted", "source_id": "all"},
        {"id": "e1", "outcome": "dead_lettered", "reason": "unsupported_event_type"},
        {"id": "e2", "outcome": "dead_lettered", "reason": "no_matching_config"},
        {"id": "e3", "outcome": "dead_lettered", "reason": "disabled", "source_id": "off"},
        {
            "id": "e4",
            "outcome": "dead_lettered",
            "reason": "ambiguous_match",
            "candidates": ["t1", "t2"],
        },
        {"id": "e5", "outcome": "dead_lettered", "reason": "no_blob_location"},
    ]
    reasons = [reason for reason, _ in rig.sink.dead_letters]
    assert reasons == [
        "unsupported_event_type",
        "no_matching_config",
        "disabled",
        "ambiguous_match",
        "no_blob_location",
    ]
    assert rig.sink.dead_letters[3][1]["candidates"] == "t1,t2"
    assert rig.sink.dead_letters[2][1]["source_id"] == "off"
    assert rig.counters.outcomes == {"accepted": 1, "dead_lettered": 5, "validation": 0}
    assert rig.counters.dead_letters["ambiguous_match"] == 1


async def test_routes_from_memory_answer_as_the_awaited_lookups_do(make_rig: MakeRig) -> None:
    """A resolver that can answer from memory routes those events inline and awaits only
    the rest; every answer, record and counter is what the awaited path gives."""
    events = [
        eg_event(0, path="hr/x.csv"),
        eg_event(1, subject=subject("f", "nowhere")),
        eg_event(2, subject=subject("f", "cold")),
        eg_event(3, subject=subject("ab", "tie")),
        cloud_event(4, path="sales/x.csv", sourceid="all"),
        cloud_event(5, sourceid="ghost"),
        cloud_event(6, subject=subject("f", "cold"), sourceid="off"),
        eg_event(7, eventType="Microsoft.Storage.BlobDeleted"),
    ]
    awaited = await make_rig(clock=lambda: 1.0)
    peeking = PeekingResolver(CONFIGS, in_memory={"landing", "tie", "all", "off"})
    inline = await make_rig(resolver=peeking, clock=lambda: 1.0)
    answers = [await r.post(events) for r in (awaited, inline)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert len(answers[0].json()["results"]) == len(events)
    assert awaited.sink.accepted_events == inline.sink.accepted_events
    assert awaited.sink.dead_letters == inline.sink.dead_letters
    assert awaited.counters.dead_letters == inline.counters.dead_letters
    assert sorted(peeking.awaited) == ["cold", "ghost", "nowhere"]  # not in memory


async def test_explicit_source_id_routes_to_that_config_where_it_owns_the_blob(rig: Rig) -> None:
    """A CloudEvent naming a source_id goes to it; unknown or disabled ids are dead-lettered."""
    events = [
        cloud_event(1, path="sales/x.csv", sourceid="all"),
        cloud_event(2, sourceid="ghost"),
        cloud_event(3, subject=subject("f", "cold"), sourceid="off"),
    ]
    response = await rig.post(events, content_type="application/cloudevents-batch+json")
    assert response.json()["results"] == [
        {"id": "c1", "outcome": "accepted", "source_id": "all"},
        {
            "id": "c2",
            "outcome": "dead_lettered",
            "reason": "unknown_source_id",
            "source_id": "ghost",
        },
        {"id": "c3", "outcome": "dead_lettered", "reason": "disabled", "source_id": "off"},
    ]


async def test_single_cloudevent_is_accepted(rig: Rig) -> None:
    """One structured-mode CloudEvent under its own content type is routed like any other."""
    response = await rig.post(cloud_event(7), content_type="application/cloudevents+json")
    assert response.json() == {
        "results": [{"id": "c7", "outcome": "accepted", "source_id": "sales"}]
    }


async def test_event_grid_validation_handshake_echoes_the_code(rig: Rig) -> None:
    """The subscription-validation event is answered with its code and writes nothing."""
    event = eg_event(
        0, eventType=SUBSCRIPTION_VALIDATION, subject="", data={"validationCode": "V-1"}
    )
    response = await rig.post([event])
    assert (response.status_code, response.json()) == (200, {"validationResponse": "V-1"})
    assert rig.sink.accepted_events == [] and rig.sink.dead_letters == []
    assert rig.counters.outcomes["validation"] == 1


async def test_cloudevents_options_handshake_allows_the_origin(rig: Rig) -> None:
    """OPTIONS with WebHook-Request-Origin is answered 200 with WebHook-Allowed-Origin."""
    response = await rig.client.options(
        "/events/blob", headers={"WebHook-Request-Origin": "eventemitter.example.com"}
    )
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com"
    assert response.headers["WebHook-Allowed-Rate"] == "*"
    bare = await rig.client.options("/events/blob")
    assert bare.status_code == 400 and "WebHook-Request-Origin" in bare.json()["detail"]


async def test_schema_error_is_400_naming_the_field_and_counted(rig: Rig) -> None:
    """A malformed event rejects the request with 400 naming ``events[2].subject``."""
    broken = {k: v for k, v in eg_event(2).items() if k != "subject"}
    response = await rig.post([eg_event(0), eg_event(1), broken])
    assert response.status_code == 400
    assert response.json() == {"detail": "events[2].subject: field required"}
    assert rig.sink.accepted_events == []
    assert rig.counters.rejections["bad_schema"] == 1


async def test_invalid_json_is_400_and_counted(rig: Rig) -> None:
    """Bytes that are not JSON get 400 and count as ``bad_json``."""
    response = await rig.post(b"[{not json")
    assert response.status_code == 400 and response.json()["detail"].startswith("body: not valid")
    assert rig.counters.rejections["bad_json"] == 1


async def test_declared_oversize_body_is_413_without_routing(make_rig: MakeRig) -> None:
    """A Content-Length over the limit is refused with 413 before the body is used."""
    rig = await make_rig(max_body_bytes=100)
    response = await rig.post([eg_event(1, data={"pad": "x" * 200})])
    assert response.status_code == 413
    assert response.json()["detail"].endswith("bytes, over 100")  # refused on the header
    assert rig.counters.rejections["too_large"] == 1 and rig.sink.accepted_events == []


async def test_streamed_oversize_body_is_413_by_bytes_read(make_rig: MakeRig) -> None:
    """A chunked body without Content-Length is cut off at the limit with 413."""
    rig = await make_rig(max_body_bytes=1000)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for i in range(50):
            yield orjson.dumps(eg_event(i)) + b","
        yield b"{}]"

    headers = {"content-type": "application/json"}
    response = await rig.client.post("/events/blob", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json() == {"detail": "body: over 1000 bytes"}  # refused while reading
    assert rig.counters.rejections["too_large"] == 1 and rig.sink.accepted_events == []


async def test_lying_content_length_does_not_bypass_the_limit(make_rig: MakeRig) -> None:
    """A small declared Content-Length with a bigger body is still cut off by bytes read."""
    rig = await make_rig(max_body_bytes=64)
    body = orjson.dumps([eg_event(1)])
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 32] for i in range(0, len(body), 32)]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/events/blob",
        "raw_path": b"/events/blob",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
        "server": ("t", 80),
        "client": ("127.0.0.1", 1),
    }
    await rig.app(scope, receive, send)
    assert sent[0]["status"] == 413 and rig.sink.accepted_events == []


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": {"X-Ingest-Token": TOKEN}},
        {"headers": {"aeg-sas-key": TOKEN}},
        {"params": {"token": TOKEN}},
    ],
)
async def test_token_is_accepted_from_either_header_or_query(
    make_rig: MakeRig, credentials: dict[str, Any]
) -> None:
    """With a token configured, X-Ingest-Token, aeg-sas-key or ?token= lets the event in."""
    rig = await make_rig(ingest_token=TOKEN)
    response = await rig.post([eg_event(1)], **credentials)
    assert response.status_code == 200 and len(rig.sink.accepted_events) == 1


@pytest.mark.parametrize(
    "credentials",
    [{}, {"headers": {"X-Ingest-Token": "wrong"}}, {"params": {"token": "ünïcode"}}],
)
async def test_missing_or_wrong_token_is_401(
    make_rig: MakeRig, credentials: dict[str, Any]
) -> None:
    """Without the configured token (or with a wrong one) the request is refused with 401."""
    rig = await make_rig(ingest_token=TOKEN)
    response = await rig.post([eg_event(1)], **credentials)
    assert response.status_code == 401
    assert rig.counters.rejections["unauthorized"] == 1 and rig.sink.accepted_events == []


async def test_sink_unavailable_is_503_for_the_whole_request(rig: Rig) -> None:
    """When the streams cannot be written the request gets 503 and no event is reported."""
    rig.sink.fail_accepted = EventSinkUnavailable("XADD failed")
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = await rig.post([eg_event(1), eg_event(2)])
    assert response.status_code == 503 and "results" not in response.json()
    assert rig.sink.dead_letters == []  # a store outage is never parked as a dead letter
    assert rig.counters.rejections["unavailable"] == 1
    assert rig.counters.outcomes["accepted"] == 0
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["events.unavailable"]


async def test_routing_bug_dead_letters_that_event_as_internal_error(rig: Rig) -> None:
    """An unexpected exception while routing one event parks it as ``internal_error``, logged."""
    rig.resolver.fail = KeyError("boom")
    with capture_logs(processors=[merge_contextvars]) as logs:
        headers = {"X-Request-Id": "req-42", "aeg-delivery-count": "2"}
        response = await rig.post([eg_event(9)], headers=headers)
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": "e9", "outcome": "dead_lettered", "reason": "internal_error"}
    ]
    assert rig.sink.dead_letters[0][0] == "internal_error"
    (error,) = [e for e in logs if e["event"] == "events.internal_error"]
    assert (error["event_id"], error["request_id"], error["delivery_count"]) == (
        "e9",
        "req-42",
        "2",
    )
    assert response.headers["X-Request-Id"] == "req-42"


async def test_sink_bug_on_accept_parks_the_event_as_internal_error(rig: Rig) -> None:
    """A non-outage failure of the accepted write dead-letters that event instead."""
    rig.sink.fail_accepted = ValueError("bad field")
    response = await rig.post([eg_event(1)])
    assert response.json()["results"][0]["reason"] == "internal_error"
    assert [reason for reason, _ in rig.sink.dead_letters] == ["internal_error"]


async def test_failing_dead_letter_after_a_bug_is_503(rig: Rig) -> None:
    """If even the dead-letter write fails after a routing bug, the request gets 503."""
    rig.resolver.fail = KeyError("boom")
    rig.sink.fail_dead_letter = RuntimeError("also broken")
    response = await rig.post([eg_event(1)])
    assert response.status_code == 503


async def test_retryable_resolver_error_is_503_not_a_dead_letter(make_rig: MakeRig) -> None:
    """A resolver error listed in ``retry_on`` (MongoDB down) asks the sender to retry."""
    rig = await make_rig(retry_on=(TimeoutError,))
    rig.resolver.fail = TimeoutError("mongo")
    response = await rig.post([eg_event(1)])
    assert response.status_code == 503
    assert response.json() == {"detail": "config store unavailable; retry later"}
    assert rig.sink.dead_letters == []


async def test_request_id_is_generated_when_absent_or_unsafe(rig: Rig) -> None:
    """Every log line of a request carries a request_id; a malformed header is replaced."""
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = await rig.post([eg_event(1)], headers={"X-Request-Id": "bad id\twith space"})
    generated = response.headers["X-Request-Id"]
    assert generated != "bad id\twith space" and len(generated) == 32
    assert {e["request_id"] for e in logs} == {generated}


async def test_openapi_documents_request_and_response_schemas(rig: Rig) -> None:
    """/openapi.json describes both schemas' bodies, the outcomes and the error responses."""
    spec = (await rig.client.get("/openapi.json")).json()
    post = spec["paths"]["/events/blob"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    assert "specversion" in content["application/cloudevents+json"]["schema"]["required"]
    assert "$ref" not in orjson.dumps(content).decode()
    assert {"200", "400", "401", "413", "503"} <= set(post["responses"])
    schemas = spec["components"]["schemas"]
    assert {"EventsResponse", "EventResult", "ValidationResponse", "ErrorResponse"} <= set(schemas)
    assert "options" in spec["paths"]["/events/blob"]


async def test_counters_feed_gauge_callbacks(rig: Rig) -> None:
    """The counters' observation lists carry bounded labels usable by gauge_callback."""
    await rig.post([eg_event(1), eg_event(2, eventType="Other")])
    await rig.post(b"nope")
    observations = gauge_callback(rig.counters.events_by_outcome)(CallbackOptions())
    outcomes = {dict(o.attributes or {})["outcome"]: o.value for o in observations}
    assert outcomes == {"accepted": 1, "dead_lettered": 1, "validation": 0}
    rejected = dict((a["reason"], v) for v, a in rig.counters.rejections_by_reason())
    assert rejected["bad_json"] == 1 and sum(rejected.values()) == 1
    dead = dict((a["reason"], v) for v, a in rig.counters.dead_letters_by_reason())
    assert dead["unsupported_event_type"] == 1


async def test_request_context_does_not_leak_past_the_request(rig: Rig) -> None:
    """request_id and event_id are unbound when the request ends (no stale log context)."""
    await rig.post([eg_event(1)], headers={"X-Request-Id": "r1"})
    assert structlog.contextvars.get_contextvars() == {}
