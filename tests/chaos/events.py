"""Blob events sent to replicas, the way Event Grid would, with a ledger of every answer.

Why it exists: "every blob event sent for an existing config must have been accepted" is
an invariant of every scenario, and scenario 7 checks that every refused request was
counted. :class:`EventClient` posts and keeps a per-replica :class:`Ledger` (statuses,
events accepted and dead-lettered) to compare with the replica's ``/metrics``;
:meth:`EventClient.deliver` retries a 503 or a transport error like Event Grid does
(the replica says "retry later" while a store is down) until the event is accepted,
dead-lettered or the deadline passes. :class:`EventSender` runs on thread
``chaos-events`` for the whole scenario, sending events for the pinned configs (which
exist and are enabled the whole time) to random replicas.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from service.event_schemas import BLOB_CREATED
from tests.chaos.probing import auth_headers
from tests.chaos.writer import pinned_container, pinned_key

CLOUDEVENTS: Final = "application/cloudevents+json"
TOPIC: Final = (
    "/subscriptions/chaos/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/chaos"
)


def _iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def event_grid(
    event_id: str, container: str, path: str, *, source_id: str | None = None
) -> dict[str, Any]:
    """One ``Microsoft.Storage.BlobCreated`` event in the Event Grid schema."""
    data: dict[str, Any] = {
        "api": "PutBlob",
        "contentType": "text/csv",
        "contentLength": 1024,
        "url": f"https://chaos.blob.core.windows.net/{container}/{path}",
    }
    if source_id is not None:
        data["source_id"] = source_id
    return {
        "id": event_id,
        "topic": TOPIC,
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": BLOB_CREATED,
        "eventTime": _iso_now(),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def cloud_event(
    event_id: str, container: str, path: str, *, source_id: str | None = None
) -> dict[str, Any]:
    """The same event as a CloudEvents 1.0 object (``sourceid`` extension when given)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/subscriptions/chaos/storageAccounts/chaos",
        "type": BLOB_CREATED,
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "time": _iso_now(),
        "data": {"url": f"https://chaos.blob.core.windows.net/{container}/{path}"},
    }
    if source_id is not None:
        event["sourceid"] = source_id
    return event


@dataclass
class Ledger:
    """What one replica answered to the harness's ``POST /events/blob`` requests."""

    statuses: Counter[int] = field(default_factory=Counter)
    accepted: int = 0
    dead_lettered: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    validations: int = 0
    transport_errors: int = 0

    @property
    def refused(self) -> int:
        """Requests answered with a 4xx or 5xx."""
        return sum(n for status, n in self.statuses.items() if status >= 400)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one event ended: ``accepted``, ``misrouted``, ``dead_lettered`` or ``failed``."""

    outcome: str
    attempts: int
    detail: str = ""
    retried_503: int = 0


class EventClient:
    """Posts to replicas (one ``httpx.Client`` per thread) and keeps a ledger per replica."""

    def __init__(self, replicas: Callable[[], dict[str, str]], *, timeout: float = 10.0) -> None:
        self._replicas = replicas
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._clients: list[httpx.Client] = []
        self.ledgers: dict[str, Ledger] = {}

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=self._timeout)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every per-thread client."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def post(
        self,
        replica: str,
        body: bytes,
        *,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        """One POST; None after a transport error. Recorded in the replica's ledger."""
        url = self._replicas()[replica] + "/events/blob"
        sent = dict(auth_headers() if headers is None else headers)
        if content_type is not None:
            sent["Content-Type"] = content_type
        try:
            response = self._client().post(url, content=body, headers=sent, params=params)
        except httpx.HTTPError:
            with self._lock:
                self.ledgers.setdefault(replica, Ledger()).transport_errors += 1
            return None
        self._record(replica, response)
        return response

    def _record(self, replica: str, response: httpx.Response) -> None:
        with self._lock:
            ledger = self.ledgers.setdefault(replica, Ledger())
            ledger.statuses[response.status_code] += 1
            if response.status_code != 200:
                return
            body = response.json()
            if "validationResponse" in body:
                ledger.validations += 1
            for result in body.get("results", []):
                if result.get("outcome") == "accepted":
                    ledger.accepted += 1
                else:
                    ledger.dead_lettered += 1
                    ledger.dead_letter_reasons[str(result.get("reason"))] += 1

    def deliver(
        self, event: dict[str, Any], *, source_id: str, rng: random.Random, deadline_s: float = 30.0
    ) -> Delivery:
        """Post ``event`` to random replicas until it is accepted for ``source_id``.

        A 503 or a transport error is retried (what Event Grid does); any other answer
        ends the delivery.
        """
        content_type = CLOUDEVENTS if "specversion" in event else "application/json"
        body = orjson.dumps(event if content_type == CLOUDEVENTS else [event])
        deadline = time.monotonic() + deadline_s
        attempts = retried = 0
        last = ""
        while time.monotonic() < deadline:
            attempts += 1
            replica = rng.choice(sorted(self._replicas()))
            response = self.post(replica, body, content_type=content_type)
            if response is None or response.status_code == 503:
                retried += response is not None
                last = f"{replica}: {'transport error' if response is None else '503'}"
                time.sleep(0.2)
                continue
            if response.status_code != 200:
                return Delivery(
                    "failed",
                    attempts,
                    f"{replica}: {response.status_code} {response.text[:300]}",
                    retried,
                )
            results = response.json().get("results", [])
            if len(results) != 1:
                return Delivery("failed", attempts, f"{replica}: results {results!r:.300}", retried)
            result = results[0]
            if result.get("outcome") == "accepted" and result.get("source_id") == source_id:
                return Delivery("accepted", attempts, replica, retried)
            if result.get("outcome") == "accepted":  # routed to another config than the one sent
                return Delivery("misrouted", attempts, f"{replica}: {result}", retried)
            return Delivery("dead_lettered", attempts, f"{replica}: {result}", retried)
        return Delivery(
            "failed", attempts, f"no answer but 503/transport errors; last {last}", retried
        )


class EventSender:
    """Thread ``chaos-events``: events for pinned configs to random replicas, all the time."""

    def __init__(
        self, client: EventClient, *, pinned: int, seed: int, interval: float = 0.1
    ) -> None:
        self._client = client
        self._pinned = pinned
        self._rng = random.Random(seed)
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.accepted = 0
        self.retried_503 = 0
        self.violations: list[str] = []

    def start(self) -> None:
        """Start sending."""
        self._thread = threading.Thread(target=self._run, name="chaos-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the delivery in progress, stop and join."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        """No event is sent inside this block (pinned configs are being recreated)."""
        with self._lock:
            yield

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            with self._lock:
                n += 1
                self._send_one(n)
            self._stop.wait(self._interval)

    def _send_one(self, n: int) -> None:
        i = self._rng.randrange(self._pinned)
        key, container = pinned_key(i), pinned_container(i)
        path = f"incoming/{n:06d}.csv"
        mode = self._rng.randrange(3)
        event_id = f"pinned-{n}"
        if mode == 0:
            event = event_grid(event_id, container, path)
        elif mode == 1:
            event = cloud_event(event_id, container, path, source_id=key)
        else:
            event = event_grid(event_id, container, path, source_id=key)
        delivery = self._client.deliver(event, source_id=key, rng=self._rng)
        self.sent += 1
        self.retried_503 += delivery.retried_503
        if delivery.outcome == "accepted":
            self.accepted += 1
        elif len(self.violations) < 20:
            self.violations.append(
                f"event {event_id} for existing config {key}: "
                f"{delivery.outcome} ({delivery.detail})"
            )
