"""Benchmark 5: blob-event ingestion throughput on one replica at concurrency 32.

* **ours**: a real service replica (``python -m service``, with a watcher, the MongoDB
  double and redis-server behind it) answering ``POST /events/blob``: parse the Event Grid
  batch, match each blob to its config from the cache, store the request's events with one
  Redis script call (de-duplicate, append, trim);
* **limit**: a FastAPI app whose ``POST /events/blob`` reads the body and returns 200,
  served by uvicorn in its own process on a free port, the same way.

The client is 32 concurrent request loops in this process (each with its own
``httpx.AsyncClient``, see :func:`load`), posting ``BlobCreated`` events for existing
configs: one event per request (Event Grid's default delivery, ``maxEventsPerBatch`` 1)
and batches of 10 (where the per-event work -- parsing, routing, storing -- weighs
against the per-request HTTP cost). The subjects alternate in rounds of equal length; the figure is
events per second (median over rounds), with per-request latency alongside. Target:
ours ≥ 0.7x the do-nothing endpoint. On a 2-core machine the client shares the CPU with
the server: the do-nothing figure is bounded by the client, which flatters the ratio
(both sides' CPU shares are recorded in the JSON).

Run as ``python -m bench.ingest --serve-noop PORT`` it serves the do-nothing app.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import psutil
from fastapi import FastAPI, Request, Response

from bench import ours
from bench.common import (
    BenchError,
    Context,
    Outcome,
    Row,
    as_jsonable,
    describe,
    fmt_ns,
    fmt_ratio,
    make_config,
    plot_lines,
    ratio,
)

NAME = "ingest"
CONCURRENCY = 32
BATCHES = (1, 10)
CONFIGS = 1_000
TARGET = 0.7
#: Placeholder in every event id, replaced on each send by the load's own random number and
#: a counter: replicas keep event ids for idempotency, and an id posted twice (in a later
#: round, or by the warm-up) would measure the duplicate path.
ID_SLOT = "0" * 16


def blob_created(i: int, config_index: int) -> dict[str, Any]:
    """One Event Grid ``Microsoft.Storage.BlobCreated`` event for config ``config_index``."""
    container = make_config(config_index)["ingestion"]["landing_container"]
    path = f"incoming/file-{i}.csv"
    return {
        "id": f"{uuid.uuid4().hex[:16]}-{ID_SLOT}",
        "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/"
        "storageAccounts/benchacct",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-24T12:00:00.0000000Z",
        "data": {
            "api": "PutBlob",
            "contentType": "text/csv",
            "contentLength": 524288,
            "blobType": "BlockBlob",
            "url": f"https://benchacct.blob.core.windows.net/{container}/{path}",
            "sequencer": f"{i:032x}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def make_bodies(count: int, configs: int, batch: int) -> list[bytes]:
    """``count`` request bodies of ``batch`` events each."""
    bodies = []
    for b in range(count):
        events = [blob_created(b * batch + j, (b * batch + j) % configs) for j in range(batch)]
        bodies.append(orjson.dumps(events))
    return bodies


async def load(
    url: str, bodies: Sequence[bytes], seconds: float, pid: int, batch: int
) -> dict[str, Any]:
    """Post ``bodies`` round-robin from :data:`CONCURRENCY` loops for ``seconds``.

    Each loop has its own ``AsyncClient`` with one keep-alive connection: one client
    shared by 32 loops spends its time in httpcore's pool bookkeeping and tops out far
    below the server (encode/httpx#3215), which would measure the client, not the server.
    ``pid``'s CPU use over the timed part is reported, to show which side was saturated.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = 0
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}
    clock = time.perf_counter_ns
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) for _ in range(CONCURRENCY)
    ]

    async def one_loop(client: httpx.AsyncClient, offset: int, deadline: float) -> None:
        nonlocal counter
        i = offset
        run = secrets.randbits(32)  # its ids differ from every other loop's and round's
        while time.monotonic() < deadline:
            body = bodies[i % len(bodies)].replace(ID_SLOT.encode(), b"%08x%08x" % (run, i))
            i += CONCURRENCY
            start = clock()
            try:
                response = await client.post("/events/blob", content=body, headers=headers)
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            if response.status_code != 200:
                key = f"status {response.status_code}"
                errors[key] = errors.get(key, 0) + 1
                continue
            latencies.append(float(clock() - start))
            counter += 1

    server = psutil.Process(pid)
    me = psutil.Process()
    try:
        warm = time.monotonic() + min(0.5, seconds / 4)
        await asyncio.gather(*(one_loop(c, i, warm) for i, c in enumerate(clients)))
        latencies.clear()
        counter = 0
        cpu0, my0 = _cpu(server), _cpu(me)
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(one_loop(c, i, deadline) for i, c in enumerate(clients)))
        elapsed = time.monotonic() - started
        server_cpu, client_cpu = (_cpu(server) - cpu0) / elapsed, (_cpu(me) - my0) / elapsed
    finally:
        for client in clients:
            await client.aclose()
    return {
        "requests": counter,
        "events_per_s": counter * batch / elapsed,
        "latency_ns": describe(latencies),
        "errors": errors,
        "server_cpu_share": server_cpu,
        "client_cpu_share": client_cpu,
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run(ctx: Context) -> Outcome:
    """Per batch size, alternate rounds against the two servers; compare median events/s."""
    rounds = ctx.pick(quick=1, default=4, full=8)
    seconds = ctx.pick(quick=1.5, default=6.0, full=10.0)
    configs = ctx.pick(quick=100, default=CONFIGS)
    docs = [make_config(i) for i in range(configs)]
    per_batch: dict[int, dict[str, list[dict[str, Any]]]] = {}
    async with ours.ingest_servers(docs, ctx.logs(NAME)) as servers:
        for batch in BATCHES:
            bodies = make_bodies(512, configs, batch)
            per_round: dict[str, list[dict[str, Any]]] = {"ours": [], "noop": []}
            for r in range(rounds):
                for subject in ("noop", "ours"):
                    ctx.log(f"   batch {batch}, round {r + 1}/{rounds}: {subject} {seconds:.1f}s")
                    url, pid = servers[subject]
                    result = await load(url, bodies, seconds, pid, batch)
                    if result["errors"] or not result["requests"]:
                        raise BenchError(f"{subject} answered errors: {result['errors']}")
                    per_round[subject].append(result)
            per_batch[batch] = per_round
    rows: list[Row] = []
    series: dict[str, tuple[list[int], list[float]]] = {}
    medians: dict[str, dict[str, float]] = {}
    for batch, per_round in per_batch.items():
        eps = {s: [r["events_per_s"] for r in rs] for s, rs in per_round.items()}
        ours_eps, noop_eps = statistics.median(eps["ours"]), statistics.median(eps["noop"])
        medians[str(batch)] = {"ours": ours_eps, "noop": noop_eps}
        share = ratio(ours_eps, noop_eps)
        for subject, values in eps.items():
            series[f"{subject}, {batch}/request"] = (list(range(1, rounds + 1)), values)
        p99 = {
            s: statistics.median(r["latency_ns"]["p99"] for r in rs) for s, rs in per_round.items()
        }
        rows += [
            Row(
                f"5 ingest events/s @{batch}/request vs do-nothing",
                f"{ours_eps:,.0f}/s",
                f"{noop_eps:,.0f}/s",
                fmt_ratio(share),
                f">= {TARGET}x",
                share >= TARGET,
            ),
            Row(
                f"5 ingest request p99 @{batch}/request vs do-nothing",
                fmt_ns(p99["ours"]),
                fmt_ns(p99["noop"]),
                fmt_ratio(ratio(p99["ours"], p99["noop"])),
                "(context)",
                None,
            ),
        ]
    png = plot_lines(
        ctx.out_dir / "ingest.png",
        title=f"Blob-event ingestion, concurrency {CONCURRENCY}",
        xlabel="round",
        ylabel="events per second",
        series=series,
    )
    data = {
        "benchmark": NAME,
        "mode": ctx.mode,
        "concurrency": CONCURRENCY,
        "events_per_request": list(BATCHES),
        "configs": configs,
        "round_seconds": seconds,
        "rounds": as_jsonable({str(b): r for b, r in per_batch.items()}),
        "events_per_s_median": medians,
        "ratio": {b: ratio(m["ours"], m["noop"]) for b, m in medians.items()},
    }
    return Outcome(NAME, rows, data, [png])


# --------------------------------------------------------------------------- noop server


def _noop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/events/blob")
    async def events_blob(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    @app.get("/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    return app


def _serve_noop(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--serve-noop", type=int, required=True, metavar="PORT")
    args = parser.parse_args(argv)
    ours.serve_like_service(_noop_app(), port=args.serve_noop)


if __name__ == "__main__":
    _serve_noop(sys.argv[1:])
