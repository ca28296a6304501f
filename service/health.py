"""Operator routes: liveness, readiness, cache state, and Prometheus metrics.

Why it exists: Kubernetes and Prometheus ask these questions of every replica, and the
answers must be cheap and honest. ``/health/live`` answers from the first moment
uvicorn listens (the warm-up runs in the background); ``/health/ready`` follows
:meth:`service.replica.Replica.readiness`; ``/metrics`` is a plain route (a mounted ASGI
app would answer ``/metrics`` with a redirect to ``/metrics/``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.replica import Replica, Status
from shared.telemetry import render_metrics


class Liveness(BaseModel):
    """Body of ``GET /health/live``."""

    alive: bool
    detail: str = ""


class Readiness(BaseModel):
    """Body of ``GET /health/ready``."""

    ready: bool
    status: Status = Field(description="ok, degraded (serving, something is off), starting, failed")
    problems: list[str] = Field(default_factory=list)


class CacheHealth(BaseModel):
    """Body of ``GET /health/cache``."""

    cache_size: int
    cache_age_seconds: float | None = Field(description="Since last known current.")
    change_stream_active: bool = Field(description="Messages/heartbeats arriving.")
    last_seq: int | None
    leader_epoch: int | None
    leader_term: str | None = Field(description="Term id of the leader last heard from.")
    pending_resync: str | None = Field(
        description="Why a loss of messages is known, until the reload completes."
    )
    last_message_age_seconds: float | None
    warmed: bool


_NOT_RUNNING = "replica not running"


def make_health_router(current: Callable[[], Replica | None]) -> APIRouter:
    """Health and metrics routes over whatever replica ``current()`` returns."""
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", response_model=Liveness, responses={503: {"model": Liveness}})
    async def live() -> JSONResponse:
        """200 while the process can serve; 503 once a root task has died."""
        replica = current()
        if replica is not None and replica.supervisor.failure is not None:
            body = Liveness(alive=False, detail=str(replica.supervisor.failure))
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Liveness(alive=True).model_dump())

    @router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready() -> JSONResponse:
        """200 once warm, subscribed and hearing heartbeats (then ``degraded`` at worst)."""
        replica = current()
        if replica is None:
            body = Readiness(ready=False, status="starting", problems=[_NOT_RUNNING])
        else:
            ok, status, problems = replica.readiness()
            body = Readiness(ready=ok, status=status, problems=problems)
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @router.get("/health/cache", response_model=CacheHealth, responses={503: {}})
    async def cache() -> JSONResponse:
        """Size, age, stream state and position of this replica's cache."""
        replica = current()
        if replica is None:
            return JSONResponse({"detail": _NOT_RUNNING}, status_code=503)
        return JSONResponse(CacheHealth(**replica.cache_health()).model_dump())

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 503: {}},
    )
    async def metrics() -> Response:
        """Prometheus text exposition."""
        replica = current()
        if replica is None:
            return Response(_NOT_RUNNING, status_code=503, media_type="text/plain")
        body, content_type = render_metrics(replica.telemetry)
        return Response(content=body, media_type=content_type)

    return router
