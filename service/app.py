"""The replica's FastAPI application: routes, and a lifespan that owns the running replica.

Why it exists: it is the one place where HTTP meets the replica. :func:`create_app`
builds the app once from settings; its lifespan enters :func:`service.replica.run_replica`
(which starts the warm-up in the background and returns at once, so uvicorn opens the
socket and ``/health/live`` answers during a long load) and leaves it at shutdown, so
every task and client the replica started is stopped before uvicorn exits.

Routes: ``/health/*`` and ``/metrics`` (:mod:`service.health`), ``POST /events/blob``
(:mod:`service.ingesting`), ``GET /configs/{source_id}`` (a lookup through the cache,
for operators, demos and tests), and the OpenAPI schema at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from service.errors import EventSinkUnavailable, RootTaskFailed, StoreError
from service.event_sinks import EventSink, IngestCounters, SinkEntry, store_each
from service.health import make_health_router
from service.ingesting import make_events_router
from service.replica import Replica, run_replica
from shared import __version__
from shared.messages import to_ejson
from shared.settings import Settings

#: Builds the running replica for one lifespan, given the events router's counters.
ReplicaOpener = Callable[[IngestCounters], AbstractAsyncContextManager[Replica]]


class _Current:
    """The replica of the running lifespan (None before start-up and after shutdown)."""

    def __init__(self) -> None:
        self.replica: Replica | None = None

    def __call__(self) -> Replica | None:
        return self.replica

    def get(self) -> Replica:
        if self.replica is None:
            raise StoreError("the replica is not running (starting up or shutting down)")
        return self.replica


class _Resolver:
    """The events router's ConfigResolver: the running replica's cache."""

    def __init__(self, current: _Current) -> None:
        self._current = current

    def peek(self, source_id: str) -> dict[str, Any] | None:
        """From memory or None (then :meth:`get_config_by_source_id` decides)."""
        replica = self._current.replica
        return None if replica is None else replica.cache.peek(source_id)

    def peek_container(self, container: str) -> list[dict[str, Any]] | None:
        """From memory or None (then :meth:`configs_for_container` decides)."""
        replica = self._current.replica
        return None if replica is None else replica.cache.peek_container(container)

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        return await self._current.get().cache.configs_for_container(container)

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        return await self._current.get().cache.get_config_by_source_id(source_id)


class _Sink:
    """The events router's EventSink: the running replica's Redis streams."""

    def __init__(self, current: _Current) -> None:
        self._current = current

    def _sink(self) -> EventSink:
        replica = self._current.replica
        if replica is None:
            raise EventSinkUnavailable("the replica is not running")
        return replica.sink

    async def accepted(
        self, source_id: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        return await self._sink().accepted(source_id, event, dedup_key=dedup_key, answer=answer)

    async def dead_letter(
        self, reason: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        return await self._sink().dead_letter(reason, event, dedup_key=dedup_key, answer=answer)

    async def store_many(self, entries: Sequence[SinkEntry]) -> list[bytes | None | Exception]:
        return await store_each(self._sink(), entries)


def create_app(
    *,
    settings: Settings,
    on_failure: Callable[[RootTaskFailed], None] | None = None,
    open_replica: ReplicaOpener | None = None,
) -> FastAPI:
    """The replica app; ``on_failure`` is called once if a root task dies.

    ``open_replica`` replaces :func:`run_replica` (tests inject fakes through it).
    """
    current = _Current()
    events = IngestCounters()

    def default_opener(counters: IngestCounters) -> AbstractAsyncContextManager[Replica]:
        return run_replica(settings, events=counters, on_failure=on_failure)

    opener = open_replica or default_opener

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with opener(events) as replica:
            current.replica = app_.state.replica = replica
            try:
                yield
            finally:
                current.replica = app_.state.replica = None

    app = FastAPI(
        title="source-config-cache replica",
        version=__version__,
        description="Source configs from memory, kept current through Redis pub/sub.",
        lifespan=lifespan,
    )
    app.include_router(make_health_router(current))
    token = settings.security.ingest_token
    app.include_router(
        make_events_router(
            resolver=_Resolver(current),
            sink=_Sink(current),
            ingest_token=None if token is None else token.get_secret_value(),
            counters=events,
            key_field=settings.mongo.key_field,
            retry_on=(StoreError,),
            body_timeout_s=settings.http.body_timeout_s,
            allowed_hosts=settings.http.blob_hosts,
        )
    )

    @app.get(
        "/configs/{source_id}",
        tags=["configs"],
        responses={404: {"description": "No such config in MongoDB"}, 503: {}},
    )
    async def get_config(source_id: str) -> JSONResponse:
        """One config as the cache sees it (read from MongoDB on a miss), extended JSON."""
        try:
            doc = await current.get().cache.get_config_by_source_id(source_id)
        except StoreError as e:
            return JSONResponse({"detail": str(e)}, status_code=503)
        if doc is None:
            return JSONResponse({"detail": f"no config {source_id!r}"}, status_code=404)
        return JSONResponse(to_ejson(doc))

    return app
