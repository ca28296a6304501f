"""``POST /events/blob``: route each blob-created event to the config that owns the blob.

Why it exists: storage raises a ``Microsoft.Storage.BlobCreated`` event (Event Grid or
CloudEvents schema) for every landed file; a replica decides, from its cached configs,
which source the file belongs to and hands the event on through a Redis stream
(``{ns}:events:accepted`` with the ``source_id``) -- or parks it in ``{ns}:events:dlq``
with a bounded reason when no single enabled config claims it.

Invariant: an event is acknowledged with a 2xx only after it was written to one of the
two streams. Never a silent drop: an unsupported type, an unmatched or disabled blob and
even a bug while routing one event all end in the dead-letter stream; when the streams
cannot be written the whole request gets a 503, which Event Grid and CloudEvents senders
retry (so delivery is at least once: consumers de-duplicate on ``event_id``).

Matching (:func:`choose_config`): an explicit ``source_id`` (CloudEvents extension
``sourceid``/``source_id`` or ``data.source_id``) names the config; otherwise the configs
whose ``ingestion.landing_container`` is the blob's container compete, each with its
``ingestion.path_pattern`` (an ``fnmatch`` glob on the blob path, case-sensitive, ``*``
crossing ``/``). A matching pattern beats no pattern; among patterns the longer literal
prefix wins, then the more literal characters; what still ties is ``ambiguous_match``.
The winner is checked last for ``enabled`` (missing or null means enabled), so disabling
a specific config parks its blobs instead of handing them to a catch-all.

Errors (drawn in :mod:`service.errors`): ``BodyError`` -> 400 naming the field,
``ConfigsUnavailable`` (the resolver raised one of ``retry_on``) -> 503,
``EventSinkUnavailable`` (neither stream could be written) -> 503, the sender retries.
The matching rules live in :mod:`service.matching`, the sinks and counters in
:mod:`service.event_sinks`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from service.errors import ConfigsUnavailable, EventSinkUnavailable
from service.event_schemas import (
    BLOB_CREATED,
    REQUEST_BODY_OPENAPI,
    BodyError,
    DeadLetterReason,
    ErrorResponse,
    EventResult,
    EventsResponse,
    InboundEvent,
    ValidationResponse,
    parse_body,
)
from service.event_sinks import EventSink, IngestCounters, RedisEventSink
from service.matching import ConfigResolver, Route, choose_config, is_enabled

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


def make_events_router(
    *,
    resolver: ConfigResolver,
    sink: EventSink,
    ingest_token: str | None = None,
    max_body_bytes: int = 1024 * 1024,
    counters: IngestCounters | None = None,
    key_field: str = "source_id",
    clock: Callable[[], float] = time.time,
    retry_on: tuple[type[Exception], ...] = (),
) -> APIRouter:
    """A router with ``POST /events/blob`` and its ``OPTIONS`` (CloudEvents) handshake.

    ``key_field`` names the config field holding its id (``SCC_KEY_FIELD``); ``retry_on``
    lists resolver exceptions that mean "try again later" (503) rather than a bug in
    routing one event (dead-lettered as ``internal_error``).
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    ingestor = _Ingestor(
        resolver=resolver,
        sink=sink,
        token=ingest_token.encode() if ingest_token else None,
        max_body_bytes=max_body_bytes,
        counters=counters if counters is not None else IngestCounters(),
        key_field=key_field,
        clock=clock,
        retry_on=retry_on,
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
            413: {"model": ErrorResponse, "description": "Body over the size limit"},
            503: {"model": ErrorResponse, "description": "Events store down; retry"},
        },
        openapi_extra=REQUEST_BODY_OPENAPI,
    )
    async def post_blob_events(
        request: Request,
        x_ingest_token: str | None = Header(default=None, description="Shared secret."),
        aeg_sas_key: str | None = Header(default=None, description="Shared secret."),
        token: str | None = Query(default=None, description="Shared secret."),
    ) -> Response:
        return await ingestor.handle(request, (x_ingest_token, aeg_sas_key, token))

    @router.options(
        "/events/blob",
        summary="CloudEvents webhook validation handshake (abuse protection)",
        responses={400: {"model": ErrorResponse}},
    )
    async def blob_events_handshake(
        webhook_request_origin: str | None = Header(default=None),
    ) -> Response:
        # Not token-checked: the handshake only states consent to receive; every POST that
        # follows is checked. Event Grid validates before the first delivery.
        if not webhook_request_origin:
            return _error(400, "WebHook-Request-Origin header: required for the handshake")
        ingestor.counters.outcomes["validation"] += 1
        _log.info("events.handshake", origin=webhook_request_origin)
        headers = {"WebHook-Allowed-Origin": webhook_request_origin, "WebHook-Allowed-Rate": "*"}
        return Response(status_code=200, headers={**headers, "Allow": "POST, OPTIONS"})

    return router


@dataclass(slots=True)
class _Ingestor:
    resolver: ConfigResolver
    sink: EventSink
    token: bytes | None
    max_body_bytes: int
    counters: IngestCounters
    key_field: str
    clock: Callable[[], float]
    retry_on: tuple[type[Exception], ...]

    async def handle(self, request: Request, tokens: tuple[str | None, ...]) -> Response:
        given = request.headers.get("x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        context = {"request_id": request_id}
        if delivery := request.headers.get("aeg-delivery-count"):
            context["delivery_count"] = delivery[:8]  # Event Grid's retry number, 0 first
        with structlog.contextvars.bound_contextvars(**context):
            response = await self._handle(request, tokens)
        response.headers["X-Request-Id"] = request_id
        return response

    async def _handle(self, request: Request, tokens: tuple[str | None, ...]) -> Response:
        if self.token is not None and not self._authorized(tokens):
            return self._reject("unauthorized", 401, "ingest token missing or wrong")
        body = await self._read_body(request)
        if isinstance(body, Response):
            return body
        try:
            batch = parse_body(body, request.headers.get("content-type"))
        except BodyError as e:
            return self._reject(e.reason, 400, e.detail)
        if batch.validation_code is not None:
            self.counters.outcomes["validation"] += 1
            _log.info("events.subscription_validated")
            return _json(ValidationResponse(validationResponse=batch.validation_code))
        # All events of the batch are routed and written concurrently, so the sink can
        # send their writes in one round trip; each still succeeds or fails on its own.
        outcomes = await asyncio.gather(
            *(self._ingest(event) for event in batch.events), return_exceptions=True
        )
        results = [r for r in outcomes if isinstance(r, EventResult)]
        for failure in outcomes:
            if isinstance(failure, EventSinkUnavailable | ConfigsUnavailable):
                _log.error("events.unavailable", error=str(failure), written=len(results))
                store = "events" if isinstance(failure, EventSinkUnavailable) else "config"
                return self._reject("unavailable", 503, f"{store} store unavailable; retry later")
            if isinstance(failure, BaseException):
                raise failure
        accepted = sum(r.outcome == "accepted" for r in results)
        _log.debug("events.batch", accepted=accepted, dead_lettered=len(results) - accepted)
        return _json(EventsResponse(results=results))

    def _authorized(self, tokens: tuple[str | None, ...]) -> bool:
        assert self.token is not None
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
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return self._reject("too_large", 413, f"body: over {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            return self._reject("incomplete_body", 400, "body: client disconnected mid-body")
        return b"".join(chunks)

    async def _ingest(self, event: InboundEvent) -> EventResult:
        with structlog.contextvars.bound_contextvars(event_id=event.id):
            try:
                route = await self._route(event)
            except self.retry_on as e:
                raise ConfigsUnavailable(f"config lookup failed: {e}") from e
            except Exception:
                _log.exception("events.internal_error", stage="route", event_type=event.type)
                return await self._park_after_bug(event)
            try:
                return await self._deliver(event, route)
            except EventSinkUnavailable:
                raise
            except Exception:
                _log.exception("events.internal_error", stage="deliver", event_type=event.type)
                return await self._park_after_bug(event)

    async def _park_after_bug(self, event: InboundEvent) -> EventResult:
        try:
            return await self._deliver(event, Route(reason="internal_error"))
        except Exception as e:
            raise EventSinkUnavailable(f"dead-lettering {event.id!r} failed: {e}") from e

    async def _route(self, event: InboundEvent) -> Route:
        if event.type != BLOB_CREATED:
            return Route(reason="unsupported_event_type")
        if event.container is None or event.path is None:
            return Route(reason="no_blob_location")
        if event.source_id is not None:
            config = await self.resolver.get_config_by_source_id(event.source_id)
            if config is None:
                return Route(source_id=event.source_id, reason="unknown_source_id")
            return Route(event.source_id, None if is_enabled(config) else "disabled")
        configs = await self.resolver.configs_for_container(event.container)
        return choose_config(
            configs, container=event.container, path=event.path, key_field=self.key_field
        )

    async def _deliver(self, event: InboundEvent, route: Route) -> EventResult:
        record: dict[str, Any] = {
            "event_id": event.id,
            "event_type": event.type,
            "subject": event.subject,
            "container": event.container or "",
            "path": event.path or "",
            "received_at": f"{self.clock():.6f}",
            "event": event.raw,
        }
        if route.reason is None and route.source_id is not None:
            await self.sink.accepted(route.source_id, record)
            self.counters.outcomes["accepted"] += 1
            _log.debug("events.accepted", source_id=route.source_id, path=event.path)
            return EventResult(id=event.id, outcome="accepted", source_id=route.source_id)
        reason: DeadLetterReason = route.reason or "internal_error"
        if route.source_id is not None:
            record["source_id"] = route.source_id
        if route.candidates:
            record["candidates"] = ",".join(route.candidates)
        await self.sink.dead_letter(reason, record)
        self.counters.outcomes["dead_lettered"] += 1
        self.counters.dead_letters[reason] += 1
        _log.info(
            "events.dead_lettered",
            reason=reason,
            event_type=event.type,
            container=event.container,
            path=event.path,
            source_id=route.source_id,
            candidates=list(route.candidates) or None,
        )
        return EventResult(
            id=event.id,
            outcome="dead_lettered",
            source_id=route.source_id,
            reason=reason,
            candidates=list(route.candidates) or None,
        )

    def _reject(self, reason: str, status: int, detail: str) -> Response:
        self.counters.rejections[reason] += 1
        if status < 500:
            _log.warning("events.rejected", reason=reason, status=status, detail=detail)
        return _error(status, detail)


def _json(model: BaseModel) -> Response:
    body = orjson.dumps(model.model_dump(mode="json", exclude_none=True))
    return Response(content=body, media_type="application/json")


def _error(status: int, detail: str) -> Response:
    return Response(
        content=orjson.dumps({"detail": detail}), status_code=status, media_type="application/json"
    )
