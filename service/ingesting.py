"""``POST /events/blob``: route each blob-created event to the config that owns the blob.

Why it exists: storage raises a ``Microsoft.Storage.BlobCreated`` event (Event Grid or
CloudEvents schema) for every landed file; a replica decides, from its cached configs,
which source the file belongs to and hands the event on through a Redis stream
(``{ns}:events:accepted`` with the ``source_id``) -- or parks it in ``{ns}:events:dlq``
with a bounded reason when no single enabled config claims it.

Invariants: an event is acknowledged with a 2xx only after it was written to one of the
two streams. A request is judged as a whole before anything is written: a body that is
not one of the three JSON media types (415), over 1 MiB (413), over
:data:`~service.event_schemas.MAX_EVENTS` events (413), not JSON, not events, nested too
deep or carrying integers outside 64 bits (400 naming the place) writes nothing. Never a
silent drop: an unsupported type, an unmatched, disabled or misconfigured blob, a
foreign ``data.url`` and even a bug while routing one event end in the dead-letter
stream. A 503 means a store is down (Redis -- or MongoDB for a config lookup) and only
that; senders retry, and a retry of an event already stored within the de-duplication
window is answered as the first time and not stored again (so a retried batch does not
duplicate its good events). Events are routed and stored in chunks that yield to the
event loop, and dead letters are logged once per request, counted by reason.

Matching (:func:`choose_config`): the configs whose ``ingestion.landing_container`` is
the blob's container compete, each with its ``ingestion.path_pattern`` (an ``fnmatch``
glob on the blob path, case-sensitive, ``*`` crossing ``/``). A matching pattern beats no
pattern; among patterns the longer literal prefix wins, then the more literal
characters; what still ties is ``ambiguous_match``. An explicit ``source_id``
(CloudEvents extension ``sourceid``/``source_id`` or ``data.source_id``) names the
config, which must still own the container and path (``route_mismatch``) unless it sets
``ingestion.explicit_route_any_location: true``. The winner is checked last for
``enabled`` (missing or null means enabled, a non-boolean is ``invalid_config``), so
disabling a specific config parks its blobs instead of handing them to a catch-all.

Errors (drawn in :mod:`service.errors`): ``BodyError`` -> 400/413 naming the field,
``ConfigsUnavailable`` (the resolver raised one of ``retry_on``) -> 503,
``EventSinkUnavailable`` (the streams could not be written, or not confirmed by enough
Redis replicas) -> 503, the sender retries. The matching rules live in
:mod:`service.matching`, the per-event routing in :mod:`service.event_routing`, the
sinks and counters in :mod:`service.event_sinks`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from service.errors import ConfigsUnavailable, EventSinkUnavailable
from service.event_openapi import HANDSHAKE_OPENAPI, REQUEST_BODY_OPENAPI, TOKEN_PARAMETERS
from service.event_routing import EventRouter
from service.event_schemas import (
    ACCEPTED_MEDIA_TYPES,
    MAX_EVENTS,
    BodyError,
    ErrorResponse,
    EventsResponse,
    ResultRecord,
    ValidationResponse,
    parse_steps,
)
from service.event_sinks import EventSink, IngestCounters, NotReplicated, RedisEventSink
from service.matching import ConfigResolver, Route, choose_config

__all__ = [
    "BodyError",
    "ConfigResolver",
    "ConfigsUnavailable",
    "EventSink",
    "EventSinkUnavailable",
    "IngestCounters",
    "RedisEventSink",
    "Route",
    "choose_config",
    "make_events_router",
]

_log: Final = structlog.get_logger(__name__)
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Generated request ids: 32 hex digits, random per process, then a counter (a uuid4 per
#: request cost a system call for an id that only has to be unique in the logs).
_ID_PREFIX: Final = secrets.token_hex(8)
_ID_COUNTER: Final = itertools.count()


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


#: Events routed and stored together before the request yields to the event loop.
CHUNK: Final = 250


def make_events_router(
    *,
    resolver: ConfigResolver,
    sink: EventSink,
    ingest_token: str | None = None,
    max_body_bytes: int = 1024 * 1024,
    max_events: int = MAX_EVENTS,
    body_timeout_s: float = 30.0,
    allowed_hosts: frozenset[str] = frozenset(),
    counters: IngestCounters | None = None,
    key_field: str = "source_id",
    clock: Callable[[], float] = time.time,
    retry_on: tuple[type[Exception], ...] = (),
) -> APIRouter:
    """A router with ``POST /events/blob`` and its ``OPTIONS`` (CloudEvents) handshake.

    ``key_field`` names the config field holding its id (``SCC_KEY_FIELD``); ``retry_on``
    lists resolver exceptions that mean "try again later" (503) rather than a bug in
    routing one event (dead-lettered as ``internal_error``); ``allowed_hosts`` (empty:
    any) are the ``data.url`` hosts accepted, others are dead-lettered as ``foreign_url``;
    a body not received within ``body_timeout_s`` is refused with 408.
    """
    if max_body_bytes < 1 or max_events < 1 or body_timeout_s <= 0:
        raise ValueError("max_body_bytes, max_events and body_timeout_s must be positive")
    counters = counters if counters is not None else IngestCounters()
    router_ = EventRouter(
        resolver=resolver,
        sink=sink,
        counters=counters,
        key_field=key_field,
        clock=clock,
        retry_on=retry_on,
        allowed_hosts=frozenset(h.lower() for h in allowed_hosts),
    )
    ingestor = _Ingestor(
        router=router_,
        token=ingest_token.encode() if ingest_token else None,
        max_body_bytes=max_body_bytes,
        max_events=max_events,
        body_timeout_s=body_timeout_s,
        counters=counters,
    )
    router = APIRouter(tags=["events"])

    @router.post(
        "/events/blob",
        summary="Route blob-created events (Event Grid or CloudEvents 1.0) to their config",
        response_model=EventsResponse | ValidationResponse,
        response_model_exclude_none=True,
        responses={
            400: {"model": ErrorResponse, "description": "Malformed JSON or event"},
            401: {"model": ErrorResponse, "description": "Ingest token missing or wrong"},
            408: {"model": ErrorResponse, "description": "Body not received in time"},
            413: {"model": ErrorResponse, "description": "Over 1 MiB or over 5,000 events"},
            415: {"model": ErrorResponse, "description": "Not a JSON events media type"},
            503: {"model": ErrorResponse, "description": "A store is down; retry"},
        },
        openapi_extra={**REQUEST_BODY_OPENAPI, "parameters": TOKEN_PARAMETERS},
    )
    async def post_blob_events(request: Request) -> Response:
        return await ingestor.handle(request)

    @router.options(
        "/events/blob",
        summary="CloudEvents webhook validation handshake (abuse protection)",
        response_class=Response,
        openapi_extra=HANDSHAKE_OPENAPI,
    )
    async def blob_events_handshake(request: Request) -> Response:
        # Not token-checked: the handshake only states consent to receive; every POST that
        # follows is checked. Event Grid validates before the first delivery.
        origin = request.headers.get("webhook-request-origin", "").strip()
        if not origin:
            return _error(400, "WebHook-Request-Origin header: required for the handshake")
        counters.outcomes["validation"] += 1
        _log.info("events.handshake", origin=origin[:200])
        headers = {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
        return Response(status_code=200, headers={**headers, "Allow": "POST, OPTIONS"})

    return router


@dataclass(slots=True)
class _Ingestor:
    router: EventRouter
    token: bytes | None
    max_body_bytes: int
    max_events: int
    body_timeout_s: float
    counters: IngestCounters

    async def handle(self, request: Request) -> Response:
        given = request.headers.get("x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else _new_request_id()
        context = {"request_id": request_id}
        if delivery := request.headers.get("aeg-delivery-count"):
            context["delivery_count"] = delivery[:8]  # Event Grid's retry number, 0 first
        with structlog.contextvars.bound_contextvars(**context):
            response = await self._handle(request)
        response.headers["X-Request-Id"] = request_id
        return response

    async def _handle(self, request: Request) -> Response:
        if self.token is not None and not self._authorized(request):
            return self._reject("unauthorized", 401, "ingest token missing or wrong")
        content_type = request.headers.get("content-type")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in ACCEPTED_MEDIA_TYPES:
            shown = repr(media[:60]) if media else "none"
            allowed = ", ".join(ACCEPTED_MEDIA_TYPES)
            detail = f"content-type: {shown}; expected one of {allowed}"
            return self._reject("unsupported_media_type", 415, detail)
        body = await self._read_body(request)
        if isinstance(body, Response):
            return body
        try:
            batch = None
            for step in parse_steps(body, content_type, max_events=self.max_events):
                if step is None:
                    await asyncio.sleep(0)
                batch = step
        except BodyError as e:
            return self._reject(e.reason, e.status, e.detail)
        del body
        assert batch is not None
        if batch.validation_code is not None:
            self.counters.outcomes["validation"] += 1
            _log.info("events.subscription_validated")
            return _json(ValidationResponse(validationResponse=batch.validation_code))
        try:
            results = await self._ingest_all(batch.events)
        except NotReplicated as failure:
            _log.error("events.not_replicated", error=str(failure))
            return self._reject("not_replicated", 503, f"{failure}")
        except (EventSinkUnavailable, ConfigsUnavailable) as failure:
            _log.error("events.unavailable", error=str(failure))
            if isinstance(failure, EventSinkUnavailable):  # Redis: "unavailable", as before
                return self._reject("unavailable", 503, "events store unavailable; retry later")
            return self._reject("config_unavailable", 503, "config store unavailable; retry later")
        _log_outcomes(results)
        # EventsResponse's shape, serialized without building the model (its schema is
        # what the route declares; the records are built to it in service.event_routing).
        return Response(content=orjson.dumps({"results": results}), media_type="application/json")

    async def _ingest_all(self, events: tuple[Any, ...]) -> list[ResultRecord]:
        # The events of one chunk are routed, then written together: one round trip and
        # one script call on Redis (EventRouter.ingest_chunk). Between chunks the request
        # yields, so other requests and probes are served meanwhile.
        results: list[ResultRecord] = []
        for start in range(0, len(events), CHUNK):
            results += await self.router.ingest_chunk(events[start : start + CHUNK])
        return results

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        headers = request.headers
        tokens = (
            headers.get("x-ingest-token"),
            headers.get("aeg-sas-key"),
            request.query_params.get("token"),
        )
        checks = [hmac.compare_digest(t.encode(), self.token) for t in tokens if t is not None]
        return any(checks)

    async def _read_body(self, request: Request) -> bytes | Response:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return self._reject("too_large", 413, f"body: {declared} bytes, over {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        return self._reject("too_large", 413, f"body: over {limit} bytes")
                    chunks.append(chunk)
        except ClientDisconnect:
            return self._reject("incomplete_body", 400, "body: client disconnected mid-body")
        except TimeoutError:
            detail = f"body: not received within {self.body_timeout_s:g} s ({size} bytes read)"
            return self._reject("body_timeout", 408, detail)
        return b"".join(chunks)

    def _reject(self, reason: str, status: int, detail: str) -> Response:
        self.counters.rejections[reason] += 1
        if status < 500:
            _log.warning("events.rejected", reason=reason, status=status, detail=detail)
        return _error(status, detail)


def _log_outcomes(results: list[ResultRecord]) -> None:
    """One line per request: how many accepted, and the dead letters counted by reason."""
    parked = Counter(r["reason"] for r in results if "reason" in r)
    accepted = len(results) - sum(parked.values())
    if parked:
        _log.info("events.dead_lettered", accepted=accepted, dead_lettered=dict(parked))
    else:
        _log.debug("events.batch", accepted=accepted, dead_lettered={})


def _json(model: BaseModel) -> Response:
    body = orjson.dumps(model.model_dump(mode="json", exclude_none=True))
    return Response(content=body, media_type="application/json")


def _error(status: int, detail: str) -> Response:
    return Response(
        content=orjson.dumps({"detail": detail}), status_code=status, media_type="application/json"
    )
