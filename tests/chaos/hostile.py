"""Hostile edges of ``POST /events/blob`` for scenario 7: deep nesting, maximum batches,
slow clients and foreign routes, each with the property the replicas must keep.

Why a module of its own: these attacks need a replica of their own -- one started with
``SCC_ALLOWED_BLOB_HOSTS`` and short HTTP timeouts (:func:`edge_replica`) -- and
measurements of the process (RSS, open descriptors, ``/health/live`` latency) that the
channel and fuzz parts of the scenario do not. Every function records what it measured
with ``rig.note`` and every broken property with ``rig.check``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import httpx
import orjson
import psutil

from service.event_schemas import BLOB_CREATED
from tests.chaos.events import cloud_event, event_grid
from tests.chaos.probing import auth_headers
from tests.chaos.rig import Rig
from tests.chaos.writer import pinned_container, pinned_key
from tests.support.fleet import Child

EDGE: Final = "r-edge"
#: The chart's memory limit of a replica (helm values ``service.resources.limits``).
RSS_LIMIT: Final = 512 * 1024 * 1024
#: ``/health/live`` must answer within this while the attacks run (the probe allows 3 s).
LIVE_WITHIN_S: Final = 1.0
HEADER_TIMEOUT_S: Final = 1.0
SLOW_CLIENTS: Final = 300
JSON: Final = "application/json"


@contextmanager
def edge_replica(rig: Rig) -> Iterator[Child]:
    """A fourth replica with a blob-host allow-list and 1 s header timeout, removed after."""
    child = rig.fleet.start_replica(
        EDGE,
        SCC_ALLOWED_BLOB_HOSTS="*.blob.core.windows.net",
        SCC_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        SCC_HTTP_BODY_TIMEOUT_S="2",
    )
    try:
        yield child
    finally:
        rig.fleet.replicas.pop(EDGE, None)
        child.stop()


def deep_nesting(rig: Rig) -> None:
    """Every replica refuses ``[good, deep(300), good]`` with 400, retried, storing nothing."""
    statuses: Counter[int] = Counter()
    stored_good: list[str] = []
    for name in sorted(rig.replica_urls()):
        body, good_ids = batch_with_deep_event(f"deep-{name}", pinned_container(0))
        for _ in range(3):  # Event Grid would retry a 503 for 24 h
            response = rig.events.post(name, body, content_type=JSON)
            status = 0 if response is None else response.status_code
            statuses[status] += 1
            if response is not None and status == 400:
                rig.check(
                    response.json()["detail"].startswith("events[1].data"),
                    f"{name}: deep event refused without naming it: {response.text[:200]}",
                )
        stored = {
            fields.get(b"event_id", b"").decode()
            for _, fields in rig.redis.xrevrange(rig.keys.events_accepted, count=2000)
        }
        stored_good += [i for i in good_ids if i in stored]
    rig.note("deep_nesting_statuses", dict(sorted(statuses.items())))
    rig.check(set(statuses) == {400}, f"deep nesting answered {dict(statuses)}, expected 400")
    rig.check(not stored_good, f"good events of a refused deep batch were stored: {stored_good}")


def max_batches(rig: Rig, edge: Child) -> None:
    """Four concurrent 5,000-event batches: all stored, RSS under the limit, probes fast."""
    process = psutil.Process(edge.pid)
    bodies = [max_batch(f"max-{k}", pinned_container(k % rig.profile.pinned)) for k in range(4)]
    statuses: list[int] = []
    with _probing(edge.url) as probe:
        threads = [
            threading.Thread(target=lambda b=b: statuses.append(_post_status(rig, edge, b)))
            for b in bodies
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            probe.peak_rss = max(probe.peak_rss, process.memory_info().rss)
            time.sleep(0.05)
        over = rig.events.post(EDGE, max_batch("max-over", pinned_container(0), count=5001))
    rig.note("max_batch_statuses", sorted(statuses))
    rig.note("max_batch_peak_rss_mib", round(probe.peak_rss / 2**20, 1))
    rig.note("max_batch_live_max_s", round(probe.worst_s, 3))
    rig.check(statuses == [200] * 4, f"maximum-size batches answered {statuses}")
    rig.check(over is not None and over.status_code == 413, "5,001 events were not refused (413)")
    rig.check(probe.peak_rss < RSS_LIMIT, f"replica RSS {probe.peak_rss / 2**20:.0f} MiB")
    rig.check(
        probe.worst_s < LIVE_WITHIN_S and probe.failures == 0,
        f"/health/live took {probe.worst_s:.2f} s ({probe.failures} failed) under max batches",
    )


def slow_clients(rig: Rig, edge: Child) -> None:
    """Idle and trickling connections are cut after the header timeout; probes still answer."""
    baseline = _fds(edge.pid)
    sockets = [_slow_socket(edge.url, trickle=i % 2 == 1) for i in range(SLOW_CLIENTS)]
    held = _fds(edge.pid)
    with _probing(edge.url) as probe:
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 10
        while _fds(edge.pid) > baseline + 5 and time.monotonic() < deadline:
            for sock in sockets[1::2]:
                _send_quietly(sock, b"X-Slow: 1\r\n")
            time.sleep(0.3)
    after = _fds(edge.pid)
    for sock in sockets:
        sock.close()
    rig.note("slow_clients_fds", {"baseline": baseline, "held": held, "after": after})
    rig.check(after <= baseline + 5, f"slow clients: fds {baseline} -> {held} -> {after}")
    rig.check(probe.failures == 0, f"/health/live failed {probe.failures}x with slow clients")


def foreign_routes(rig: Rig) -> None:
    """Events naming a real config from a foreign container or host are never accepted."""
    sources = [pinned_key(i) for i in range(min(3, rig.profile.pinned))]
    reasons: Counter[str] = Counter()
    for name in sorted(rig.replica_urls()):
        events = foreign_route_events(f"foreign-{name}", sources)
        for event in events:
            response = rig.events.post(name, orjson.dumps([event]), content_type=JSON)
            if response is None or response.status_code != 200:
                rig.check(
                    False, f"{name}: foreign route answered {response and response.status_code}"
                )
                continue
            (result,) = response.json()["results"]
            reasons[str(result.get("reason"))] += 1
            rig.check(
                result["outcome"] != "accepted",
                f"{name}: {event['id']} from a foreign location accepted for {result}",
            )
    rig.note("foreign_route_reasons", dict(sorted(reasons.items())))
    if EDGE in rig.replica_urls():
        rig.check(reasons["foreign_url"] >= len(sources), f"no foreign_url on {EDGE}: {reasons}")


# ------------------------------------------------------------- hostile request bodies


def deep_event(event_id: str, container: str, path: str, *, depth: int = 300) -> bytes:
    """One Event Grid event whose ``data`` is ``[`` x depth + ``]`` x depth, as JSON bytes.

    Built as bytes: nested this deep, orjson could not serialize it (its limit is 254).
    """
    shell = orjson.dumps(event_grid(event_id, container, path) | {"data": "DEEP"})
    return shell.replace(b'"DEEP"', b"[" * depth + b"]" * depth)


def batch_with_deep_event(prefix: str, container: str) -> tuple[bytes, list[str]]:
    """``[good, deep, good]`` (Event Grid schema) and the ids of the two good events.

    The whole request must be refused with 400 naming the deep event, and its good events
    must not be stored, however often it is retried.
    """
    good = [
        event_grid(f"{prefix}-good-{i}", container, f"incoming/{prefix}-{i}.csv") for i in (0, 1)
    ]
    deep = deep_event(f"{prefix}-deep", container, f"incoming/{prefix}-deep.csv")
    body = b"[" + orjson.dumps(good[0]) + b"," + deep + b"," + orjson.dumps(good[1]) + b"]"
    return body, [str(e["id"]) for e in good]


def max_batch(prefix: str, container: str, *, count: int = 5000) -> bytes:
    """``count`` minimal BlobCreated events (about 200 bytes each) in one body under 1 MiB."""
    events = [
        {
            "id": f"{prefix}-{i}",
            "subject": f"/blobServices/default/containers/{container}/blobs/incoming/{i}.csv",
            "eventType": BLOB_CREATED,
            "eventTime": "2026-12-02T00:00:00Z",
        }
        for i in range(count)
    ]
    return orjson.dumps(events)


def foreign_route_events(prefix: str, source_ids: list[str]) -> list[dict[str, Any]]:
    """Events that name a real config explicitly but come from elsewhere.

    Three per source: a CloudEvent and an Event Grid event (``data.source_id``) from
    container ``attacker``, and an event whose ``data.url`` names a foreign host
    (dead-lettered ``foreign_url`` by a replica with ``SCC_ALLOWED_BLOB_HOSTS`` set).
    None of them may ever be accepted for that source.
    """
    events: list[dict[str, Any]] = []
    for n, source_id in enumerate(source_ids):
        events.append(cloud_event(f"{prefix}-ce-{n}", "attacker", "x.csv", source_id=source_id))
        events.append(event_grid(f"{prefix}-eg-{n}", "attacker", "x.csv", source_id=source_id))
        foreign = event_grid(f"{prefix}-url-{n}", "attacker", "x.csv")
        foreign["data"]["url"] = "https://evil.example.net/attacker/x.csv"
        events.append(foreign)
    return events


class _Probe:
    def __init__(self) -> None:
        self.worst_s = 0.0
        self.failures = 0
        self.peak_rss = 0


@contextmanager
def _probing(url: str) -> Iterator[_Probe]:
    """``GET /health/live`` every 100 ms on a thread of its own while the block runs."""
    probe, stop = _Probe(), threading.Event()

    def run() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{url}/health/live").status_code == 200
                except httpx.HTTPError:
                    ok = False
                probe.worst_s = max(probe.worst_s, time.perf_counter() - started)
                probe.failures += not ok
                stop.wait(0.1)

    thread = threading.Thread(target=run, name="chaos-live-probe", daemon=True)
    thread.start()
    try:
        yield probe
    finally:
        stop.set()
        thread.join(timeout=10)


def _post_status(rig: Rig, edge: Child, body: bytes) -> int:
    with httpx.Client(timeout=60) as client:
        headers = {**auth_headers(), "Content-Type": JSON}
        try:
            return client.post(f"{edge.url}/events/blob", content=body, headers=headers).status_code
        except httpx.HTTPError:
            return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _slow_socket(url: str, *, trickle: bool) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    if trickle:
        _send_quietly(sock, b"POST /events/blob HTTP/1.1\r\nHost: r\r\n")
    return sock


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server closed it: what the attack is meant to provoke
