"""The wire shapes of ``POST /events/blob``: Azure Event Grid and CloudEvents 1.0, in and out.

Why a module of its own: the router in :mod:`service.ingesting` never touches raw JSON.
Every byte string a sender can post is turned here either into a :class:`Batch` of
:class:`InboundEvent` (id, type, where the blob is, an explicit ``source_id`` if any, and
the event exactly as received) or into a :class:`BodyError` whose message names the
offending field (``events[2].subject: field required``). The pydantic models double as
the OpenAPI description of the endpoint (:mod:`service.event_openapi`).

Invariant: :func:`parse_body` returns one ``InboundEvent`` per event in the body, in
order, or raises ``BodyError`` -- nothing else, whatever the bytes (pinned by a property
test). Which body shape is which:

* a JSON array under ``application/json``: Event Grid events; an element carrying
  ``specversion`` is read as a CloudEvent instead (a batch is never rejected for mixing);
* a JSON array under ``application/cloudevents-batch+json``: CloudEvents, every element;
* a JSON object: one CloudEvent (Event Grid itself always posts arrays).

A ``Microsoft.EventGrid.SubscriptionValidationEvent`` must arrive alone (Event Grid sends
it alone); the batch then carries only its ``validationCode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, Required, TypedDict, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.blob_locations import locate_blob, url_host
from service.event_checks import LimitError, check_document
from shared.errors import SccError

BLOB_CREATED: Final = "Microsoft.Storage.BlobCreated"
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
CLOUDEVENTS_BATCH: Final = "application/cloudevents-batch+json"
#: The media types ``POST /events/blob`` accepts (415 for any other).
ACCEPTED_MEDIA_TYPES: Final = (
    "application/json",
    "application/cloudevents+json",
    CLOUDEVENTS_BATCH,
)
#: Most events one request may carry (Event Grid delivers at most 5,000); 413 above.
MAX_EVENTS: Final = 5000
_MAX_DETAIL: Final = 300

#: Why an event went to the dead-letter stream; bounded, so it can label a metric.
DeadLetterReason = Literal[
    "unsupported_event_type",
    "no_blob_location",
    "unknown_source_id",
    "no_matching_config",
    "ambiguous_match",
    "disabled",
    "invalid_config",
    "route_mismatch",
    "foreign_url",
    "internal_error",
]
DEAD_LETTER_REASONS: Final[tuple[str, ...]] = get_args(DeadLetterReason)


class BodyError(SccError):
    """The request body is not JSON, or not events; ``str(e)`` names the field (→ 400).

    ``reason`` is a bounded metric label: ``bad_json``, ``bad_schema``, ``over_limit``
    (nesting or integer range, see :mod:`service.event_checks`) or ``too_many_events``
    (``status`` 413).
    """

    def __init__(
        self,
        reason: Literal["bad_json", "bad_schema", "over_limit", "too_many_events"],
        detail: str,
        *,
        status: int = 400,
    ) -> None:
        detail = detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


class EventGridEvent(BaseModel):
    """One event in the Azure Event Grid schema (the body is a JSON array of these)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, description="Unique per event; Event Grid retries keep it.")
    topic: str | None = Field(default=None, description="Full resource path of the source.")
    subject: str = Field(
        description="For blob events `/blobServices/default/containers/{c}/blobs/{path}`."
    )
    event_type: str = Field(alias="eventType", min_length=1)
    event_time: str = Field(alias="eventTime", description="ISO 8601 time of the event.")
    data: Any = Field(
        default=None,
        description="Event payload; for blob events an object with `url` (used when the "
        "subject does not locate the blob) and optionally `source_id`.",
    )
    data_version: str | None = Field(default=None, alias="dataVersion")
    metadata_version: str | None = Field(default=None, alias="metadataVersion")


class CloudEvent(BaseModel):
    """One CloudEvents 1.0 event (structured JSON mode); extension attributes are kept."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = Field(
        default=None,
        description="For blob events `/blobServices/default/containers/{c}/blobs/{path}`.",
    )
    time: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    sourceid: str | None = Field(
        default=None, description="Extension attribute: route to this config explicitly."
    )
    source_id: str | None = Field(default=None, description="Same as `sourceid` (non-standard).")


class _ValidationData(BaseModel):
    validation_code: str = Field(alias="validationCode", min_length=1)


class EventResult(BaseModel):
    """What happened to one event of the request."""

    id: str
    outcome: Literal["accepted", "dead_lettered"]
    source_id: str | None = Field(default=None, description="The config it was routed to.")
    reason: DeadLetterReason | None = Field(default=None, description="Why it was dead-lettered.")
    candidates: list[str] | None = Field(
        default=None, description="For `ambiguous_match`: the source_ids that tied."
    )


class ResultRecord(TypedDict, total=False):
    """:class:`EventResult` as the hot path builds it: a plain dict, ``None`` fields left
    out (what ``model_dump(mode="json", exclude_none=True)`` gives, at a tenth the cost)."""

    id: Required[str]
    outcome: Required[Literal["accepted", "dead_lettered"]]
    source_id: str
    reason: DeadLetterReason
    candidates: list[str]


class EventsResponse(BaseModel):
    """200: every event of the request, in order, was written to one of the two streams."""

    results: list[EventResult]


class ValidationResponse(BaseModel):
    """200 to Event Grid's subscription-validation handshake."""

    validationResponse: str  # the wire name Event Grid expects, hence camelCase


class ErrorResponse(BaseModel):
    """4xx/5xx: what was wrong, naming the field when there is one."""

    detail: str


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One event of a request, reduced to what routing needs (plus the event as received)."""

    id: str
    type: str
    subject: str
    container: str | None
    path: str | None
    source_id: str | None
    raw: dict[str, Any]
    #: The event as received, serialized once at parse time (what the stream stores).
    raw_json: bytes = b""
    #: Host of ``data.url`` (lower case) when the event carries one, else None.
    url_host: str | None = None
    #: Whether ``data.url`` is present at all (a non-string or unparsable one counts).
    has_url: bool = False
    #: Who sent it (CloudEvents ``source``, Event Grid ``topic``): with ``id`` it names it.
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """A parsed body: its events, or only the code of a validation handshake."""

    events: tuple[InboundEvent, ...] = ()
    validation_code: str | None = None


def parse_body(body: bytes, content_type: str | None, *, max_events: int = MAX_EVENTS) -> Batch:
    """Parse a request body (see the module docstring); raises :class:`BodyError` only.

    A batch of more than ``max_events`` is refused (413) before any event is validated.
    """
    *_, batch = parse_steps(body, content_type, max_events=max_events)
    assert batch is not None
    return batch


def parse_steps(
    body: bytes, content_type: str | None, *, max_events: int = MAX_EVENTS, chunk: int = 500
) -> Iterator[Batch | None]:
    """:func:`parse_body` in steps: None after every ``chunk`` events, then the Batch.

    A caller on an event loop yields to it at each None, so a maximum-size batch never
    holds the loop for longer than one chunk takes to validate.
    """
    if not body.strip():
        raise BodyError("bad_json", "body: empty; expected a JSON array of events or one event")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BodyError("bad_json", f"body: not valid JSON ({e})") from None
    if isinstance(document, list) and len(document) > max_events:
        raise BodyError(
            "too_many_events",
            f"body: {len(document)} events, over the limit of {max_events} per request",
            status=413,
        )
    try:
        where = "events" if isinstance(document, list) else "event"
        document = check_document(body, document, where=where)
    except LimitError as e:
        raise BodyError("over_limit", str(e)) from None
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if isinstance(document, list):
        cloud = media == CLOUDEVENTS_BATCH
        events: list[tuple[InboundEvent, bool]] = []
        for i, item in enumerate(document):
            events.append(_parse_one(item, f"events[{i}]", cloud))
            if i % chunk == chunk - 1:
                yield None
        yield _maybe_handshake(events)
        return
    if isinstance(document, dict) and media != CLOUDEVENTS_BATCH:
        yield Batch(events=(_parse_one(document, "event", True)[0],))
        return
    raise BodyError(
        "bad_schema",
        f"body: expected a JSON array of events or one CloudEvents object under "
        f"{media or 'no content type'}, got {type(document).__name__}",
    )


def _parse_one(item: Any, where: str, cloud: bool) -> tuple[InboundEvent, bool]:
    """The event, and whether it is in the Event Grid schema (only those can be handshakes).

    A plainly well-formed event (:func:`_plain_event_grid`, :func:`_plain_cloud_event`)
    skips the model: a batch of blob events is mostly that, and validating each through
    pydantic cost more than routing it. Anything else goes through the model, which
    names what is wrong; the plain checks accept only what the models accept (pinned by
    a property test).
    """
    is_cloud = cloud or (isinstance(item, dict) and "specversion" in item)
    plain = _plain_cloud_event(item) if is_cloud else _plain_event_grid(item)
    if plain is not None:
        event_id, event_type, subject, data, explicit, origin = plain
        explicit = explicit or _data_source_id(data, where)
        return _inbound(event_id, event_type, subject, data, explicit, item, origin), not is_cloud
    try:
        if is_cloud:
            ce = CloudEvent.model_validate(item)
            explicit = ce.sourceid or ce.source_id or _data_source_id(ce.data, where)
            subject = ce.subject or ""
            return _inbound(ce.id, ce.type, subject, ce.data, explicit, item, ce.source), False
        eg = EventGridEvent.model_validate(item)
    except ValidationError as e:
        raise BodyError("bad_schema", _describe(where, e)) from None
    explicit = _data_source_id(eg.data, where)
    origin = eg.topic or ""
    return _inbound(eg.id, eg.event_type, eg.subject, eg.data, explicit, item, origin), True


#: ``(id, type, subject, data, explicit source_id or None, origin)`` of a plain event.
_Plain = tuple[str, str, str, Any, str | None, str]


def _plain_event_grid(item: Any) -> _Plain | None:
    """An Event Grid event whose every modelled field has the type the model wants, else
    None (then :class:`EventGridEvent` judges it)."""
    if type(item) is not dict:
        return None
    g = item.get
    event_id, subject, event_type, event_time = (
        g("id"),
        g("subject"),
        g("eventType"),
        g("eventTime"),
    )
    topic, data_version, metadata_version = g("topic"), g("dataVersion"), g("metadataVersion")
    if not (
        type(event_id) is str
        and event_id
        and type(subject) is str
        and type(event_type) is str
        and event_type
        and type(event_time) is str
        and (topic is None or type(topic) is str)
        and (data_version is None or type(data_version) is str)
        and (metadata_version is None or type(metadata_version) is str)
    ):
        return None
    return event_id, event_type, subject, g("data"), None, topic or ""


def _plain_cloud_event(item: Any) -> _Plain | None:
    """:func:`_plain_event_grid` for :class:`CloudEvent`."""
    if type(item) is not dict or item.get("specversion") != "1.0":
        return None
    g = item.get
    event_id, source, event_type, subject = g("id"), g("source"), g("type"), g("subject")
    optional = (g("time"), g("datacontenttype"), g("dataschema"), g("sourceid"), g("source_id"))
    if not (
        type(event_id) is str
        and event_id
        and type(source) is str
        and source
        and type(event_type) is str
        and event_type
        and (subject is None or type(subject) is str)
        and all(v is None or type(v) is str for v in optional)
    ):
        return None
    return event_id, event_type, subject or "", g("data"), optional[3] or optional[4], source


def _maybe_handshake(parsed: list[tuple[InboundEvent, bool]]) -> Batch:
    for i, (event, event_grid) in enumerate(parsed):
        if not event_grid or event.type != SUBSCRIPTION_VALIDATION:
            continue
        if len(parsed) != 1:
            raise BodyError(
                "bad_schema", f"events[{i}]: {SUBSCRIPTION_VALIDATION} must be sent alone"
            )
        try:
            data = _ValidationData.model_validate(event.raw.get("data"))
        except ValidationError as e:
            raise BodyError("bad_schema", _describe(f"events[{i}].data", e)) from None
        return Batch(validation_code=data.validation_code)
    return Batch(events=tuple(event for event, _ in parsed))


def _inbound(
    event_id: str,
    event_type: str,
    subject: str,
    data: Any,
    source_id: str | None,
    raw: Any,
    origin: str,
) -> InboundEvent:
    location = locate_blob(subject, data)
    container, path = location if location else (None, None)
    has_url = isinstance(data, dict) and "url" in data
    host = url_host(data["url"]) if has_url else None
    # Depth and integer range were checked for the whole body, so this cannot fail on
    # what the parser accepted; serializing here means nothing fails after a write.
    raw_json = orjson.dumps(raw)
    return InboundEvent(
        event_id, event_type, subject, container, path, source_id, raw, raw_json, host,
        has_url, origin,
    )  # fmt: skip


def _data_source_id(data: Any, where: str) -> str | None:
    if not isinstance(data, dict) or "source_id" not in data:
        return None
    value = data["source_id"]
    if not isinstance(value, str) or not value:
        raise BodyError("bad_schema", f"{where}.data.source_id: must be a non-empty string")
    return value


def _describe(where: str, error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    message = first["msg"][:1].lower() + first["msg"][1:]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{loc}: {message}{more}"
