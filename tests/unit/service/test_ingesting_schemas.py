"""Parsing ``POST /events/blob`` bodies: both schemas, the handshake, and field-naming errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.event_schemas import (
    BLOB_CREATED,
    SUBSCRIPTION_VALIDATION,
    BodyError,
    CloudEvent,
    EventGridEvent,
    _plain_cloud_event,
    _plain_event_grid,
    locate_blob,
    parse_body,
)

SUBJECT = "/blobServices/default/containers/landing/blobs/incoming/2024/a.csv"


def eg_event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"e{i}",
        "topic": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "subject": SUBJECT,
        "eventType": BLOB_CREATED,
        "eventTime": "2026-11-24T10:00:00Z",
        "data": {"url": "https://acct.blob.core.windows.net/landing/incoming/2024/a.csv"},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    event.update(overrides)
    return event


def cloud_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "type": BLOB_CREATED,
        "source": "/subscriptions/s/providers/Microsoft.Storage/storageAccounts/acct",
        "id": "c1",
        "subject": SUBJECT,
        "time": "2026-11-24T10:00:00Z",
        "data": {},
    }
    event.update(overrides)
    return event


def body(document: Any) -> bytes:
    return orjson.dumps(document)


def test_event_grid_array_yields_one_located_event_per_element_in_order() -> None:
    """An Event Grid array parses to events carrying id, type, container, path and the raw event."""
    raw = [eg_event(0), eg_event(1, subject="/blobServices/default/containers/c2/blobs/x.json")]
    batch = parse_body(body(raw), "application/json")
    assert [e.id for e in batch.events] == ["e0", "e1"]
    first, second = batch.events
    assert (first.type, first.container, first.path) == (
        BLOB_CREATED,
        "landing",
        "incoming/2024/a.csv",
    )
    assert (second.container, second.path) == ("c2", "x.json")
    assert first.raw == raw[0] and first.source_id is None
    assert batch.validation_code is None


def test_single_cloudevent_reads_the_sourceid_extension() -> None:
    """A single CloudEvents object is one event; its ``sourceid`` extension names the config."""
    batch = parse_body(body(cloud_event(sourceid="src-1")), "application/cloudevents+json")
    (event,) = batch.events
    assert (event.id, event.container, event.source_id) == ("c1", "landing", "src-1")


@pytest.mark.parametrize(
    ("extension", "data"),
    [({"source_id": "src-2"}, {}), ({}, {"source_id": "src-2"})],
)
def test_source_id_also_comes_from_the_underscore_extension_or_data(
    extension: dict[str, Any], data: dict[str, Any]
) -> None:
    """``source_id`` as an extension attribute or inside ``data`` is an explicit route too."""
    (event,) = parse_body(body(cloud_event(data=data, **extension)), "application/json").events
    assert event.source_id == "src-2"


def test_cloudevents_batch_content_type_validates_every_element_as_a_cloudevent() -> None:
    """Under the batch content type an Event Grid-shaped element fails on ``specversion``."""
    raw = [cloud_event(id="a"), eg_event(1)]
    with pytest.raises(BodyError) as caught:
        parse_body(body(raw), "application/cloudevents-batch+json; charset=utf-8")
    assert str(caught.value).startswith("events[1].specversion: field required")
    batch = parse_body(body(raw[:1]), "application/cloudevents-batch+json")
    assert [e.id for e in batch.events] == ["a"]


def test_missing_field_is_named_with_its_index() -> None:
    """A schema error names the event index and the field, e.g. ``events[2].subject``."""
    raw = [eg_event(0), eg_event(1), {k: v for k, v in eg_event(2).items() if k != "subject"}]
    with pytest.raises(BodyError) as caught:
        parse_body(body(raw), "application/json")
    assert caught.value.reason == "bad_schema"
    assert str(caught.value) == "events[2].subject: field required"


def test_wrong_type_is_named_and_more_problems_are_counted() -> None:
    """A mistyped field is named first and further problems are summarised, not listed."""
    with pytest.raises(BodyError) as caught:
        parse_body(body([eg_event(0, id=7, eventType=None)]), "application/json")
    assert str(caught.value) == "events[0].id: input should be a valid string (and 1 more)"


@pytest.mark.parametrize(
    ("raw", "reason", "start"),
    [
        (b"", "bad_json", "body: empty"),
        (b"[{", "bad_json", "body: not valid JSON"),
        (b"\xff\xfe", "bad_json", "body: not valid JSON"),
        (b"42", "bad_schema", "body: expected a JSON array"),
        (b"[1]", "bad_schema", "events[0]: input should be a valid dictionary"),
        (b'{"id": "x"}', "bad_schema", "event.specversion: field required"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(raw: bytes, reason: str, start: str) -> None:
    """Bad JSON and non-event JSON raise BodyError with a bounded reason and a named place."""
    with pytest.raises(BodyError) as caught:
        parse_body(raw, "application/json")
    assert caught.value.reason == reason
    assert str(caught.value).startswith(start)


def test_object_under_the_batch_content_type_is_refused() -> None:
    """A CloudEvents batch must be an array; a lone object under that type is a schema error."""
    with pytest.raises(BodyError, match="expected a JSON array"):
        parse_body(body(cloud_event()), "application/cloudevents-batch+json")


def test_subscription_validation_event_yields_only_its_code() -> None:
    """Event Grid's validation event turns the batch into a handshake carrying the code."""
    event = eg_event(
        0, eventType=SUBSCRIPTION_VALIDATION, subject="", data={"validationCode": "X1"}
    )
    batch = parse_body(body([event]), "application/json")
    assert batch.validation_code == "X1" and batch.events == ()


def test_validation_event_without_code_or_not_alone_is_refused() -> None:
    """A validation event must carry ``data.validationCode`` and arrive alone."""
    bare = eg_event(0, eventType=SUBSCRIPTION_VALIDATION, data={})
    with pytest.raises(BodyError, match=r"^events\[0\]\.data\.validationCode: field required"):
        parse_body(body([bare]), "application/json")
    coded = eg_event(1, eventType=SUBSCRIPTION_VALIDATION, data={"validationCode": "X"})
    with pytest.raises(BodyError, match=r"^events\[1\]: .* must be sent alone"):
        parse_body(body([eg_event(0), coded]), "application/json")


def test_non_string_data_source_id_is_a_schema_error() -> None:
    """An explicit ``data.source_id`` that is not a non-empty string is refused, not ignored."""
    with pytest.raises(BodyError, match=r"^events\[0\]\.data\.source_id: must be a non-empty"):
        parse_body(body([eg_event(0, data={"source_id": 5})]), "application/json")


def test_blob_is_located_from_the_url_when_the_subject_does_not_say() -> None:
    """Without a blob subject, ``data.url`` gives the container and the URL-decoded path."""
    url = "https://acct.blob.core.windows.net/landing/dir%20x/a%2Bb.csv"
    assert locate_blob("", {"url": url}) == ("landing", "dir x/a+b.csv")
    assert locate_blob("/blobServices/default/containers/c/blobs/", {}) is None
    assert locate_blob("", {"url": "https://acct.blob.core.windows.net/only-container"}) is None
    assert locate_blob("", {"url": "ftp://h/c/p"}) is None
    assert locate_blob("", "not a dict") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=15,
)
field_names = st.sampled_from(
    ["id", "subject", "eventType", "eventTime", "data", "specversion", "type", "source",
     "validationCode", "url", "source_id", "sourceid"]
)  # fmt: skip
event_like = st.dictionaries(field_names, json_values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    document=json_values | st.lists(event_like, max_size=3) | event_like,
    raw=st.binary(max_size=40),
    content_type=st.sampled_from(
        [
            None,
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        ]
    ),
)
def test_parse_body_raises_nothing_but_body_error(
    document: Any, raw: bytes, content_type: str | None
) -> None:
    """Whatever the bytes, parse_body returns a Batch or raises BodyError, nothing else."""
    for candidate in (orjson.dumps(document), raw):
        try:
            parse_body(candidate, content_type)
        except BodyError as e:
            assert e.reason in {"bad_json", "bad_schema"} and len(str(e)) <= 300


_maybe_str = st.none() | st.text(max_size=3) | st.integers(-1, 1) | st.booleans()
_event_grid_like = st.fixed_dictionaries(
    {},
    optional={
        name: _maybe_str
        for name in (
            "id", "topic", "subject", "eventType", "eventTime", "dataVersion",
            "metadataVersion", "event_type",
        )
    } | {"data": json_values},
)  # fmt: skip
_cloud_like = st.fixed_dictionaries(
    {"specversion": st.sampled_from(["1.0", "0.3", 1.0])},
    optional={
        name: _maybe_str
        for name in (
            "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
            "sourceid", "source_id",
        )
    } | {"data": json_values},
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(item=_event_grid_like | _cloud_like)
def test_plain_events_skip_the_model_only_where_it_would_accept_them(item: dict[str, Any]) -> None:
    """The model-free path of an event accepts exactly what EventGridEvent / CloudEvent
    accept, and reads the same id, type, subject, data, sender and source_id."""
    cloud = "specversion" in item
    plain = _plain_cloud_event(item) if cloud else _plain_event_grid(item)
    try:
        model: Any = (CloudEvent if cloud else EventGridEvent).model_validate(item)
    except ValidationError:
        assert plain is None
        return
    assert plain is not None  # and everything the model accepts is plain
    if cloud:
        expected = (model.id, model.type, model.subject or "", model.data)
        expected += (model.sourceid or model.source_id or None, model.source)
    else:
        expected = (model.id, model.event_type, model.subject, model.data, None)
        expected += (model.topic or "",)
    assert plain == expected


def test_the_usual_blob_events_take_the_model_free_path() -> None:
    """The events Event Grid and CloudEvents deliver for a blob are plainly well-formed."""
    assert _plain_event_grid(eg_event()) is not None
    assert _plain_cloud_event(cloud_event(sourceid="s1")) is not None
