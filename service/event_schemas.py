"""The wire shapes of ``POST /events/blob``: Azure Event Grid and CloudEvents 1.0, in and out.

Why a module of its own: the router in :mod:`service.ingesting` never touches raw JSON.
Every byte string a sender can post is turned here either into a :class:`Batch` of
:class:`InboundEvent` (id, type, where the blob is, an explicit ``source_id`` if any, and
the event exactly as received) or into a :class:`BodyError` whose message names the
offending field (``events[2].subject: field required``). The pydantic models double as
the OpenAPI description of the endpoint (:data:`REQUEST_BODY_OPENAPI`).

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

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.errors import SccError

BLOB_CREATED: Final = "Microsoft.Storage.BlobCreated"
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
CLOUDEVENTS_BATCH: Final = "application/cloudevents-batch+json"
_MAX_DETAIL: Final = 300
_SUBJECT: Final = re.compile(
    r"^/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<path>.+)$"
)

#: Why an event went to the dead-letter stream; bounded, so it can label a metric.
DeadLetterReason = Literal[
    "unsupported_event_type",
    "no_blob_location",
    "unknown_source_id",
    "no_matching_config",
    "ambiguous_match",
    "disabled",
    "internal_error",
]
DEAD_LETTER_REASONS: Final[tuple[str, ...]] = get_args(DeadLetterReason)


class BodyError(SccError):
    """The request body is not JSON, or not events; ``str(e)`` names the field (→ 400).

    ``reason`` is ``bad_json`` or ``bad_schema`` (a bounded metric label).
    """

    def __init__(self, reason: Literal["bad_json", "bad_schema"], detail: str) -> None:
        detail = detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


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


@dataclass(frozen=True, slots=True)
class Batch:
    """A parsed body: its events, or only the code of a validation handshake."""

    events: tuple[InboundEvent, ...] = ()
    validation_code: str | None = None


def parse_body(body: bytes, content_type: str | None) -> Batch:
    """Parse a request body (see the module docstring); raises :class:`BodyError` only."""
    if not body.strip():
        raise BodyError("bad_json", "body: empty; expected a JSON array of events or one event")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BodyError("bad_json", f"body: not valid JSON ({e})") from None
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if isinstance(document, list):
        cloud = media == CLOUDEVENTS_BATCH
        events = [_parse_one(item, f"events[{i}]", cloud) for i, item in enumerate(document)]
        return _maybe_handshake(events)
    if isinstance(document, dict) and media != CLOUDEVENTS_BATCH:
        return Batch(events=(_parse_one(document, "event", True)[0],))
    raise BodyError(
        "bad_schema",
        f"body: expected a JSON array of events or one CloudEvents object under "
        f"{media or 'no content type'}, got {type(document).__name__}",
    )


def _parse_one(item: Any, where: str, cloud: bool) -> tuple[InboundEvent, EventGridEvent | None]:
    try:
        if cloud or (isinstance(item, dict) and "specversion" in item):
            ce = CloudEvent.model_validate(item)
            explicit = ce.sourceid or ce.source_id or _data_source_id(ce.data, where)
            return _inbound(ce.id, ce.type, ce.subject or "", ce.data, explicit, item), None
        eg = EventGridEvent.model_validate(item)
    except ValidationError as e:
        raise BodyError("bad_schema", _describe(where, e)) from None
    explicit = _data_source_id(eg.data, where)
    return _inbound(eg.id, eg.event_type, eg.subject, eg.data, explicit, item), eg


def _maybe_handshake(parsed: list[tuple[InboundEvent, EventGridEvent | None]]) -> Batch:
    for i, (_, eg) in enumerate(parsed):
        if eg is None or eg.event_type != SUBSCRIPTION_VALIDATION:
            continue
        if len(parsed) != 1:
            raise BodyError(
                "bad_schema", f"events[{i}]: {SUBSCRIPTION_VALIDATION} must be sent alone"
            )
        try:
            data = _ValidationData.model_validate(eg.data)
        except ValidationError as e:
            raise BodyError("bad_schema", _describe(f"events[{i}].data", e)) from None
        return Batch(validation_code=data.validation_code)
    return Batch(events=tuple(event for event, _ in parsed))


def _inbound(
    event_id: str, event_type: str, subject: str, data: Any, source_id: str | None, raw: Any
) -> InboundEvent:
    location = locate_blob(subject, data)
    container, path = location if location else (None, None)
    return InboundEvent(event_id, event_type, subject, container, path, source_id, raw)


def _data_source_id(data: Any, where: str) -> str | None:
    if not isinstance(data, dict) or "source_id" not in data:
        return None
    value = data["source_id"]
    if not isinstance(value, str) or not value:
        raise BodyError("bad_schema", f"{where}.data.source_id: must be a non-empty string")
    return value


def locate_blob(subject: str, data: Any) -> tuple[str, str] | None:
    """``(container, path)`` from a blob event's subject, else from ``data.url``.

    The subject carries the blob name as stored; ``data.url``
    (``https://{account}.blob.core.windows.net/{container}/{path}``, virtual-host style,
    any host) carries it URL-encoded, so it is decoded.
    """
    match = _SUBJECT.match(subject)
    if match:
        return match["container"], match["path"]
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    container, _, path = parts.path.lstrip("/").partition("/")
    if parts.scheme not in ("http", "https") or not container or not path:
        return None
    return unquote(container), unquote(path)


def _describe(where: str, error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    first = problems[0]
    loc = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    message = first["msg"][:1].lower() + first["msg"][1:]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{loc}: {message}{more}"


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    # The route's request body is documented through ``openapi_extra``, which cannot add
    # component schemas, so the (non-recursive) definitions are inlined instead.
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def _schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    schema = adapter.json_schema(by_alias=True)
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


#: ``openapi_extra`` for the POST route: the three accepted body shapes by content type.
REQUEST_BODY_OPENAPI: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _schema(TypeAdapter(list[EventGridEvent] | CloudEvent)),
            },
            "application/cloudevents+json": {"schema": _schema(TypeAdapter(CloudEvent))},
            CLOUDEVENTS_BATCH: {"schema": _schema(TypeAdapter(list[CloudEvent]))},
        },
    }
}
