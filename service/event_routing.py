"""Route one parsed blob event to its config and store it: the per-event half of ingestion.

Why a module of its own: :mod:`service.ingesting` speaks HTTP (tokens, media types,
bodies, status codes); this module decides, for each event that survived parsing, which
stream it goes to and with what answer, and stores it through the
:class:`~service.event_sinks.EventSink`.

Invariants: every event ends in exactly one :class:`EventResult` or raises one of the two
"retry later" errors (:class:`EventSinkUnavailable` -- Redis; :class:`ConfigsUnavailable`
-- MongoDB), never anything else; an event whose id (with its source) was already stored
within the de-duplication window is answered as it was the first time and not stored
again; dead letters are counted here and logged by the caller once per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import orjson
import structlog

from service.errors import ConfigsUnavailable, EventSinkUnavailable
from service.event_checks import host_allowed
from service.event_schemas import (
    BLOB_CREATED,
    DeadLetterReason,
    EventResult,
    InboundEvent,
    ResultRecord,
)
from service.event_sinks import EventSink, IngestCounters, SinkEntry, store_each
from service.matching import ConfigResolver, Route, check_explicit, choose_config
from shared.clients import REDIS_DOWN_ERRORS

_log: Final = structlog.get_logger("service.ingesting")


@dataclass(slots=True)
class EventRouter:
    """Routes and stores events; ``allowed_hosts`` empty means any ``data.url`` host."""

    resolver: ConfigResolver
    sink: EventSink
    counters: IngestCounters
    key_field: str = "source_id"
    clock: Callable[[], float] = time.time
    retry_on: tuple[type[Exception], ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    dedup: bool = True
    _peek_key: Callable[[str], dict[str, Any] | None] | None = field(init=False, repr=False)
    _peek_container: Callable[[str], list[dict[str, Any]] | None] | None = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        # A resolver may answer from memory without a coroutine (the replica's cache
        # does); such events are routed inline, the others in a task each.
        self._peek_key = getattr(self.resolver, "peek", None)
        self._peek_container = getattr(self.resolver, "peek_container", None)

    async def ingest_chunk(self, events: Sequence[InboundEvent]) -> list[ResultRecord]:
        """Route every event of a chunk, then store them all in one sink call; their results.

        An event the resolver can route from memory (:meth:`_route_now`) is routed inline;
        the others are looked up concurrently, a task each (a config MongoDB must be asked
        for does not hold up the others): a task per event cost more than routing it.
        Nothing is stored before every event is routed, so a config store that fails
        (:class:`ConfigsUnavailable`) leaves the whole chunk unwritten. The writes then go
        out together (:func:`~service.event_sinks.store_each`: one script call on Redis).
        A bug in a sink that stores many at once falls back to :meth:`ingest` per event,
        which parks each event it cannot store as ``internal_error``.
        """
        routes: list[Route | BaseException | None] = [self._route_now_or_park(e) for e in events]
        later = [i for i, route in enumerate(routes) if route is None]
        if later:
            found = await asyncio.gather(
                *(self._route_or_park(events[i]) for i in later), return_exceptions=True
            )
            for i, looked_up in zip(later, found, strict=True):
                routes[i] = looked_up
        planned = []
        for event, routed in zip(events, routes, strict=True):
            if isinstance(routed, BaseException):
                raise routed
            assert routed is not None
            planned.append(self._plan_or_park(event, routed))
        try:
            priors = await store_each(self.sink, [entry for _, entry in planned])
        except EventSinkUnavailable:
            raise
        except REDIS_DOWN_ERRORS as e:  # the Redis client failed outside the sink's guard
            raise EventSinkUnavailable(f"storing {len(events)} event(s) failed: {e}") from e
        except Exception:
            _log.exception("events.internal_error", stage="deliver_chunk", events=len(events))
            return list(await asyncio.gather(*(self.ingest(e) for e in events)))
        results: list[ResultRecord] = []
        for (result, _), prior in zip(planned, priors, strict=True):
            if isinstance(prior, Exception):
                raise prior
            results.append(self._count(result, prior))
        return results

    def _route_now_or_park(self, event: InboundEvent) -> Route | None:
        try:
            return self._route_now(event)
        except self.retry_on as e:
            raise ConfigsUnavailable(f"config lookup failed: {e}") from e
        except Exception:
            with structlog.contextvars.bound_contextvars(event_id=event.id):
                _log.exception("events.internal_error", stage="route", event_type=event.type)
            return Route(reason="internal_error")

    async def _route_or_park(self, event: InboundEvent) -> Route:
        # Runs in a task of its own (gathered): the binding ends with the task.
        structlog.contextvars.bind_contextvars(event_id=event.id)
        try:
            return await self._route(event)
        except self.retry_on as e:
            raise ConfigsUnavailable(f"config lookup failed: {e}") from e
        except Exception:
            _log.exception("events.internal_error", stage="route", event_type=event.type)
            return Route(reason="internal_error")

    def _plan_or_park(self, event: InboundEvent, route: Route) -> tuple[ResultRecord, SinkEntry]:
        try:
            return self._plan(event, route)
        except Exception:
            with structlog.contextvars.bound_contextvars(event_id=event.id):
                _log.exception("events.internal_error", stage="deliver", event_type=event.type)
            return self._plan(event, Route(reason="internal_error"))

    async def ingest(self, event: InboundEvent) -> ResultRecord:
        """Route ``event`` and store it; its result (see the module docstring).

        Runs in a task of its own (the caller gathers one per event): ``event_id`` is
        bound to the log context of that task, which ends with it, so it is not unbound
        here -- a ``bound_contextvars`` block per event cost more than routing it.
        """
        structlog.contextvars.bind_contextvars(event_id=event.id)
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

    async def _park_after_bug(self, event: InboundEvent) -> ResultRecord:
        try:
            return await self._deliver(event, Route(reason="internal_error"))
        except EventSinkUnavailable:
            raise
        except REDIS_DOWN_ERRORS as e:  # the Redis client failed outside the sink's guard
            raise EventSinkUnavailable(f"dead-lettering {event.id!r} failed: {e}") from e

    def _route_now(self, event: InboundEvent) -> Route | None:
        """The route, when it needs no config or the resolver has the config in memory;
        ``None`` when :meth:`_route` must ask the resolver (same rules, same answer)."""
        early = self._without_config(event)
        if early is not None:
            return early
        if event.source_id is not None:
            config = self._peek_key(event.source_id) if self._peek_key else None
            return None if config is None else self._explicit(event, event.source_id, config)
        assert event.container is not None
        configs = self._peek_container(event.container) if self._peek_container else None
        return None if configs is None else self._chosen(event, configs)

    async def _route(self, event: InboundEvent) -> Route:
        early = self._without_config(event)
        if early is not None:
            return early
        if event.source_id is not None:
            config = await self.resolver.get_config_by_source_id(event.source_id)
            if config is None:
                return Route(source_id=event.source_id, reason="unknown_source_id")
            return self._explicit(event, event.source_id, config)
        assert event.container is not None
        return self._chosen(event, await self.resolver.configs_for_container(event.container))

    def _without_config(self, event: InboundEvent) -> Route | None:
        """The dead letter an event earns before any config is looked at, else None."""
        if event.type != BLOB_CREATED:
            return Route(reason="unsupported_event_type")
        if event.has_url and not host_allowed(event.url_host, self.allowed_hosts):
            return Route(source_id=event.source_id, reason="foreign_url")
        if event.container is None or event.path is None:
            return Route(reason="no_blob_location")
        return None

    @staticmethod
    def _explicit(event: InboundEvent, source_id: str, config: dict[str, Any]) -> Route:
        assert event.container is not None and event.path is not None
        return check_explicit(
            config, source_id=source_id, container=event.container, path=event.path
        )

    def _chosen(self, event: InboundEvent, configs: list[dict[str, Any]]) -> Route:
        assert event.container is not None and event.path is not None
        return choose_config(
            configs, container=event.container, path=event.path, key_field=self.key_field
        )

    async def _deliver(self, event: InboundEvent, route: Route) -> ResultRecord:
        result, entry = self._plan(event, route)
        if entry.stream == "accepted":
            prior = await self.sink.accepted(
                entry.tag, entry.record, dedup_key=entry.dedup_key, answer=entry.answer
            )
        else:
            prior = await self.sink.dead_letter(
                entry.tag, entry.record, dedup_key=entry.dedup_key, answer=entry.answer
            )
        return self._count(result, prior)

    def _plan(self, event: InboundEvent, route: Route) -> tuple[ResultRecord, SinkEntry]:
        """The event's result and what to store for it (nothing is written here)."""
        record: dict[str, Any] = {
            "event_id": event.id,
            "event_type": event.type,
            "subject": event.subject,
            "container": event.container or "",
            "path": event.path or "",
            "received_at": f"{self.clock():.6f}",
            "event": event.raw_json or orjson.dumps(event.raw),
        }
        dedup_key = f"{event.origin}\0{event.id}" if self.dedup else ""
        result: ResultRecord
        if route.reason is None and route.source_id is not None:
            result = {"id": event.id, "outcome": "accepted", "source_id": route.source_id}
            entry = SinkEntry("accepted", route.source_id, record, dedup_key, orjson.dumps(result))
            return result, entry
        reason: DeadLetterReason = route.reason or "internal_error"
        result = {"id": event.id, "outcome": "dead_lettered"}
        if route.source_id is not None:
            record["source_id"] = result["source_id"] = route.source_id
        result["reason"] = reason
        if route.candidates:
            record["candidates"] = ",".join(route.candidates)
            result["candidates"] = list(route.candidates)
        return result, SinkEntry("dlq", reason, record, dedup_key, orjson.dumps(result))

    def _count(self, result: ResultRecord, prior: bytes | None) -> ResultRecord:
        if prior is not None:
            self.counters.duplicates += 1
            result = _earlier(prior, result)
        elif "reason" in result:
            self.counters.dead_letters[result["reason"]] += 1
        self.counters.outcomes[result["outcome"]] += 1
        return result


def _earlier(prior: bytes, fallback: ResultRecord) -> ResultRecord:
    """The answer the first delivery stored (validated: Redis holds what anyone wrote)."""
    try:
        earlier = EventResult.model_validate_json(prior)
    except ValueError:  # written by another version; the id was stored, say so plainly
        return fallback
    return cast(ResultRecord, earlier.model_dump(mode="json", exclude_none=True))
