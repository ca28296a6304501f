"""``POST /events/blob`` under attack, with fakes: media types, routes, hosts, configs, logs."""

# ruff: noqa: F811 -- the rig fixtures are imported from test_ingesting and used by name

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from service.matching import choose_config
from tests.unit.service.test_ingesting import (  # noqa: F401 -- fixtures used by name
    CONFIGS,
    MakeRig,
    Rig,
    cloud_event,
    eg_event,
    make_rig,
    rig,
    subject,
)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
async def test_other_media_types_are_415_and_write_nothing(rig: Rig, content_type: str) -> None:
    """A body posted as text, a form or without a content type is refused with 415."""
    response = await rig.post([eg_event(1)], content_type=content_type)
    assert response.status_code == 415
    assert "expected one of application/json" in response.json()["detail"]
    assert rig.sink.accepted_events == [] and rig.counters.rejections["unsupported_media_type"]


async def test_json_with_parameters_is_accepted(rig: Rig) -> None:
    """``application/json; charset=utf-8`` is still JSON."""
    response = await rig.post([eg_event(1)], content_type="application/json; charset=utf-8")
    assert response.status_code == 200


async def test_explicit_source_id_for_another_container_is_a_route_mismatch(rig: Rig) -> None:
    """An event from container ``attacker`` naming ``sales`` is dead-lettered, not accepted."""
    events = [
        cloud_event(1, subject=subject("sales/x.csv", "attacker"), sourceid="sales"),
        cloud_event(2, path="hr/x.csv", sourceid="sales"),
    ]
    response = await rig.post(events, content_type="application/cloudevents-batch+json")
    assert [(r["outcome"], r.get("reason")) for r in response.json()["results"]] == [
        ("dead_lettered", "route_mismatch"),
        ("dead_lettered", "route_mismatch"),  # right container, path outside sales/*
    ]
    forged = eg_event(3, subject=subject("sales/x.csv", "attacker"), data={"source_id": "sales"})
    response = await rig.post([forged])
    assert response.json()["results"][0]["reason"] == "route_mismatch"
    assert rig.sink.accepted_events == []
    assert rig.counters.dead_letters["route_mismatch"] == 3


async def test_a_config_can_opt_out_of_the_location_check(rig: Rig) -> None:
    """``explicit_route_any_location: true`` lets a named config take blobs from anywhere."""
    rig.resolver.configs = [
        *CONFIGS,
        {"source_id": "any", "ingestion": {"landing_container": "x", ANY: True}},
        {"source_id": "odd", "ingestion": {"landing_container": "x", ANY: "yes"}},
    ]
    events = [
        cloud_event(1, subject=subject("f", "elsewhere"), sourceid="any"),
        cloud_event(2, subject=subject("f", "elsewhere"), sourceid="odd"),
    ]
    response = await rig.post(events, content_type="application/cloudevents-batch+json")
    assert [(r["outcome"], r.get("reason")) for r in response.json()["results"]] == [
        ("accepted", None),
        ("dead_lettered", "invalid_config"),
    ]


ANY = "explicit_route_any_location"


async def test_foreign_blob_host_is_dead_lettered_when_hosts_are_restricted(
    make_rig: MakeRig,
) -> None:
    """With allowed hosts set, a data.url on another host goes to the DLQ as ``foreign_url``."""
    rig = await make_rig(allowed_hosts=frozenset({"*.blob.core.windows.net"}))
    good = "https://acct.blob.core.windows.net/landing/sales/a.csv"
    events = [
        eg_event(1, data={"url": good}),
        eg_event(2, data={"url": "https://evil.example/landing/sales/a.csv"}),
        eg_event(3, data={"url": 42}),
        eg_event(4, data={}),  # no url: nothing is forwarded, the subject locates it
    ]
    response = await rig.post(events)
    assert [r.get("reason") for r in response.json()["results"]] == [
        None,
        "foreign_url",
        "foreign_url",
        None,
    ]
    any_host = await make_rig()
    response = await any_host.post([eg_event(5, data={"url": "https://evil.example/l/a"})])
    assert response.json()["results"][0]["outcome"] == "accepted"  # unset: any host


@pytest.mark.parametrize("enabled", ["false", 0, "no", [], {"v": False}])
async def test_non_boolean_enabled_is_an_invalid_config(rig: Rig, enabled: Any) -> None:
    """``enabled: "false"`` (or any non-boolean) dead-letters as ``invalid_config``, counted."""
    rig.resolver.configs = [
        {"source_id": "x", "enabled": enabled, "ingestion": {"landing_container": "landing"}}
    ]
    response = await rig.post([eg_event(1, subject=subject("a.csv"))])
    assert response.json()["results"][0]["reason"] == "invalid_config"
    assert rig.counters.dead_letters["invalid_config"] == 1
    assert rig.sink.accepted_events == []


def test_dotted_key_field_names_the_config() -> None:
    """With key field ``meta.sid`` the winner is named by its nested id, never ``"None"``."""
    configs = [
        {"meta": {"sid": "a"}, "ingestion": {"landing_container": "c", "path_pattern": "x/*"}},
        {"meta": {"sid": "b"}, "ingestion": {"landing_container": "c", "path_pattern": "y/*"}},
        {"meta": {"sid": "z"}, "ingestion": {"landing_container": "c"}},
    ]
    route = choose_config(configs, container="c", path="x/1", key_field="meta.sid")
    assert (route.source_id, route.reason) == ("a", None)
    assert choose_config(configs, container="c", path="q", key_field="meta.sid").source_id == "z"
    keyless = [{"ingestion": {"landing_container": "c"}}]
    route = choose_config(keyless, container="c", path="q", key_field="meta.sid")
    assert route.reason == "invalid_config"


async def test_dead_letters_are_logged_once_per_request_by_reason(rig: Rig) -> None:
    """Two hundred dead letters make one info line with counts by reason, not 200 lines."""
    events = [eg_event(i, eventType="Other") for i in range(150)]
    events += [eg_event(i + 150, subject=subject("f", "nowhere")) for i in range(50)]
    events.append(eg_event(999))
    with capture_logs(processors=[merge_contextvars]) as logs:
        response = await rig.post(events)
    assert response.status_code == 200
    lines = [e for e in logs if e["event"].startswith("events.")]
    assert [e["event"] for e in lines] == ["events.dead_lettered"]
    assert lines[0]["dead_lettered"] == {"unsupported_event_type": 150, "no_matching_config": 50}
    assert lines[0]["accepted"] == 1 and "request_id" in lines[0]


async def test_options_handshake_refuses_a_blank_origin(rig: Rig) -> None:
    """A blank WebHook-Request-Origin is a 400 like a missing one; a real one gets no body."""
    blank = await rig.client.options("/events/blob", headers={"WebHook-Request-Origin": " "})
    assert blank.status_code == 400
    ok = await rig.client.options("/events/blob", headers={"WebHook-Request-Origin": "o.example"})
    assert ok.status_code == 200 and ok.content == b"" and "content-type" not in ok.headers


async def test_openapi_marks_the_handshake_origin_required(rig: Rig) -> None:
    """The OPTIONS description says the origin header is required and 200 has no body."""
    spec = (await rig.client.get("/openapi.json")).json()
    options = spec["paths"]["/events/blob"]["options"]
    (origin,) = [p for p in options["parameters"] if p["name"] == "WebHook-Request-Origin"]
    assert origin["required"] is True and origin["in"] == "header"
    assert "content" not in options["responses"]["200"]
    post = spec["paths"]["/events/blob"]["post"]
    assert {"408", "413", "415"} <= set(post["responses"])


async def test_a_body_that_never_finishes_is_408(make_rig: MakeRig) -> None:
    """A client that sends half a body and stalls is answered 408 after the body timeout."""
    rig = await make_rig(body_timeout_s=0.05)
    sent: list[dict[str, Any]] = []
    parts = [b'[{"id":']

    async def receive() -> dict[str, Any]:
        if parts:
            return {"type": "http.request", "body": parts.pop(), "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

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
        "headers": [(b"content-type", b"application/json")],
        "server": ("t", 80),
        "client": ("127.0.0.1", 1),
    }
    await asyncio.wait_for(rig.app(scope, receive, send), timeout=5)
    assert sent[0]["status"] == 408 and rig.counters.rejections["body_timeout"] == 1


async def test_mongodb_down_is_counted_apart_from_redis_down(make_rig: MakeRig) -> None:
    """A config-store outage is a 503 counted as ``config_unavailable``, not as Redis down."""
    rig = await make_rig(retry_on=(TimeoutError,))
    rig.resolver.fail = TimeoutError("mongo")
    response = await rig.post([eg_event(1)])
    assert response.status_code == 503
    assert rig.counters.rejections["config_unavailable"] == 1
    assert rig.counters.rejections["unavailable"] == 0


async def test_a_maximum_batch_yields_to_the_event_loop_between_chunks(make_rig: MakeRig) -> None:
    """While 5,000 events are parsed and routed, other tasks run at least once per chunk."""
    from service.ingesting import CHUNK

    rig = await make_rig(max_body_bytes=4 * 1024 * 1024)  # these events are not minimal

    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    events = [eg_event(i, subject=subject(f"sales/{i}.csv")) for i in range(5000)]
    task = asyncio.create_task(ticker())
    try:
        response = await rig.post(events)
    finally:
        done.set()
        await task
    assert response.status_code == 200 and len(rig.sink.accepted_events) == 5000
    assert ticks >= 2 * 5000 // CHUNK  # parse chunks and route chunks both yield
