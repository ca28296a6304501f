"""The app's wiring over fakes: routes, readiness policy, metrics, events, root-task failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from service.app import create_app
from service.caching import ConfigCache
from service.errors import RootTaskFailed, StoreError
from service.ingesting import IngestCounters
from service.metrics import register_replica_metrics
from service.replica import Replica
from service.snapshot import Snapshot
from service.subscribing import Subscriber
from service.supervising import Supervisor, stop_tasks
from shared.settings import Settings, load_settings
from shared.telemetry import make_telemetry
from tests.unit.service.fakes import FakeClock, FakeStore, ScriptedFeed, config

SEED_NAMES = {
    "source_config_cache_hits_total",
    "source_config_cache_misses_total",
    "source_config_cache_invalidations_total",
    "source_config_cache_age_seconds",
    "source_config_cache_size",
}


class RecordingSink:
    """An EventSink that remembers what it was given."""

    def __init__(self) -> None:
        self.accepted_events: list[tuple[str, dict[str, Any]]] = []
        self.dead: list[tuple[str, dict[str, Any]]] = []

    async def accepted(self, source_id: str, event: dict[str, Any], **_: Any) -> None:
        self.accepted_events.append((source_id, event))

    async def dead_letter(self, reason: str, event: dict[str, Any], **_: Any) -> None:
        self.dead.append((reason, event))


def settings() -> Settings:
    return load_settings(
        mongo={"uri": "mongodb://127.0.0.1:1/"},
        process={"instance_id": "unit-replica", "log_format": "console"},
    )


class Parts:
    """A Replica built from fakes; its state is set by the test, no subscriber runs."""

    def __init__(self, store: FakeStore) -> None:
        self.clock = FakeClock()
        self.store = store
        self.cache = ConfigCache(
            store=store,
            key_field="source_id",
            negative_ttl_s=2,
            max_staleness_s=30,
            clock=self.clock,
        )
        self.subscriber = Subscriber(
            feed=ScriptedFeed(self.clock),
            store=store,
            cache=self.cache,
            key_field="source_id",
            heartbeat_interval_s=1,
            clock=self.clock,
        )
        self.sink = RecordingSink()
        self.failures: list[RootTaskFailed] = []
        self.supervisor = Supervisor(on_failure=self.failures.append)

    def warm(self, *docs: dict[str, Any]) -> None:
        snapshot, _ = Snapshot.build([dict(d) for d in docs], key_field="source_id")
        self.cache.install(snapshot, fresh_at=self.clock())
        self.subscriber.state.subscribed = True
        self.subscriber.state.stream_active = True
        self.cache.set_stream_active(True)

    @asynccontextmanager
    async def opener(self, events: IngestCounters) -> AsyncIterator[Replica]:
        telemetry = make_telemetry(service_name="test", instance_id="unit-replica")
        register_replica_metrics(
            telemetry.meter("service"),
            cache=self.cache,
            state=self.subscriber.state,
            events=events,
        )
        replica = Replica(
            settings=settings(),
            cache=self.cache,
            subscriber=self.subscriber,
            sink=self.sink,
            telemetry=telemetry,
            supervisor=self.supervisor,
            clock=self.clock,
        )
        try:
            yield replica
        finally:
            await self.supervisor.aclose()
            await self.cache.aclose()
            telemetry.shutdown()


@asynccontextmanager
async def serving(parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings=settings(), open_replica=parts.opener)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://replica") as client,
    ):
        yield client


async def test_openapi_describes_every_route() -> None:
    """/openapi.json lists health, metrics, events and config routes."""
    async with serving(Parts(FakeStore())) as client:
        paths = set((await client.get("/openapi.json")).json()["paths"])
    assert {
        "/health/live",
        "/health/ready",
        "/health/cache",
        "/metrics",
        "/events/blob",
        "/configs/{source_id}",
    } <= paths


async def test_ready_is_503_until_warm_subscribed_and_fresh_then_degrades_not_drops() -> None:
    """Readiness gates start-up; afterwards a silent stream reports degraded, still 200."""
    parts = Parts(FakeStore())
    async with serving(parts) as client:
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "starting"
        parts.warm(config("a"))
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json() == {
            "ready": True,
            "status": "ok",
            "problems": [],
        }
        parts.subscriber.state.stream_active = False
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["problems"]


async def test_health_cache_has_exactly_the_documented_fields() -> None:
    """/health/cache carries the nine documented fields with the cache's values."""
    parts = Parts(FakeStore())
    parts.warm(config("a"), config("b"))
    parts.subscriber.state.last_seq = 7
    parts.subscriber.state.epoch = 2
    async with serving(parts) as client:
        body = (await client.get("/health/cache")).json()
    assert body == {
        "cache_size": 2,
        "cache_age_seconds": 0.0,
        "change_stream_active": True,
        "last_seq": 7,
        "leader_epoch": 2,
        "leader_term": None,
        "pending_resync": None,
        "last_message_age_seconds": None,
        "warmed": True,
    }


async def test_metrics_is_a_plain_route_with_the_seed_names() -> None:
    """GET /metrics answers 200 directly (no redirect) and names the five seed series."""
    parts = Parts(FakeStore([config("in-mongo")]))
    parts.warm(config("a"))
    async with serving(parts) as client:
        assert (await client.get("/configs/a")).status_code == 200
        assert (await client.get("/configs/in-mongo")).status_code == 200
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    assert SEED_NAMES - {"source_config_cache_invalidations_total"} <= set(samples)
    assert samples["source_config_cache_hits_total"] == 1
    assert samples["source_config_cache_misses_total"] == 1
    assert samples["source_config_cache_size"] == 2
    assert "source_config_cache_invalidations" in families


async def test_config_route_answers_404_for_unknown_and_503_when_mongodb_fails() -> None:
    """/configs/{id}: extended JSON when found, 404 after MongoDB said no, 503 if it can't."""
    store = FakeStore()
    parts = Parts(store)
    parts.warm(config("a", "c"))
    async with serving(parts) as client:
        assert (await client.get("/configs/a")).json() == config("a", "c")
        assert (await client.get("/configs/zzz")).status_code == 404
        store.fail = StoreError("no primary")
        response = await client.get("/configs/other")
    assert response.status_code == 503 and "no primary" in response.json()["detail"]


async def test_blob_events_are_routed_through_the_cache_to_the_sink() -> None:
    """POST /events/blob matches the container through the cache and hands the event on."""
    store = FakeStore([config("late", "created-late")])
    parts = Parts(store)
    parts.warm(config("s1", "landing"))
    subject = "/blobServices/default/containers/landing/blobs/a/b.csv"
    event: dict[str, Any] = {
        "id": "e1",
        "subject": subject,
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-24T00:00:00Z",
        "dataVersion": "1",
        "data": {},
    }
    late = {**event, "id": "e2", "subject": subject.replace("landing", "created-late")}
    async with serving(parts) as client:
        response = await client.post("/events/blob", json=[event, late])
        assert response.status_code == 200
        store.fail = StoreError("mongodb down")
        unknown = {**event, "id": "e3", "subject": subject.replace("landing", "x")}
        unavailable = await client.post("/events/blob", json=[unknown])
    assert [r["outcome"] for r in response.json()["results"]] == ["accepted", "accepted"]
    assert [s for s, _ in parts.sink.accepted_events] == ["s1", "late"]
    assert unavailable.status_code == 503  # MongoDB down: the sender retries later


async def test_a_dying_root_task_is_logged_reported_and_fails_health() -> None:
    """A root task that raises is logged with its name, reported once, and turns health 503."""
    parts = Parts(FakeStore())
    parts.warm()

    async def boom() -> None:
        raise RuntimeError("subscriber bug")

    async with serving(parts) as client:
        with capture_logs() as logs:
            parts.supervisor.start("scc-test-root", boom())
            await asyncio.sleep(0.01)
        assert len(parts.failures) == 1 and "subscriber bug" in str(parts.failures[0])
        assert any(e["event"] == "root task died" and e["task"] == "scc-test-root" for e in logs)
        ready = await client.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert (await client.get("/health/live")).status_code == 503


async def test_a_root_task_that_returns_is_a_failure_too() -> None:
    """A root task that simply returns is not silently forgotten."""
    failures: list[RootTaskFailed] = []
    supervisor = Supervisor(on_failure=failures.append)

    async def quits() -> None:
        return None

    supervisor.start("scc-quitter", quits())
    await asyncio.sleep(0.01)
    assert supervisor.failure is not None and "returned" in str(supervisor.failure)
    await supervisor.aclose()


async def test_stop_tasks_cancels_again_when_a_task_swallows_the_cancellation() -> None:
    """A task that eats one CancelledError (CPython 86296 in redis-py) is still stopped."""
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed.set()  # as asyncio.wait_for on 3.11 sometimes does
        await asyncio.sleep(10)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await stop_tasks([task], timeout_s=2, recancel_s=0.05)
    assert task.cancelled() and swallowed.is_set()
    assert any(e["event"] == "task ignored a cancellation; cancelling again" for e in logs)


@pytest.mark.parametrize("reason", ["gap", "bad_message"])
async def test_resync_counters_appear_by_reason_on_metrics(reason: str) -> None:
    """scc_replica_resyncs_total has one series per bounded reason, counting each resync."""
    parts = Parts(FakeStore())
    parts.warm()
    parts.subscriber.state.resyncs[reason] += 2
    async with serving(parts) as client:
        text = (await client.get("/metrics")).text
    assert f'scc_replica_resyncs_total{{reason="{reason}"}} 2.0' in text
    assert 'scc_replica_resyncs_total{reason="broadcast"} 0.0' in text
