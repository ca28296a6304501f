"""Slow and idle clients against a real ``python -m service``: bounded fds, probes served."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from shared.keys import Keys
from tests.integration.service.replica_rig import FakeLeader
from tests.integration.service.test_service_process import ROOT, clean_env
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import free_port

pytestmark = pytest.mark.integration
SLOW = 500


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def slow_client(port: int, kind: int, stop: asyncio.Event) -> None:
    """One hostile connection: idle, a header line every 0.3 s, or a body that never ends."""
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if kind == 1:
                writer.write(b"POST /events/blob HTTP/1.1\r\nHost: r\r\n")
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.3)
            elif kind == 2:
                writer.write(
                    b"POST /events/blob HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n[{"
                )
                await writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(), timeout=30)
        finally:
            writer.close()


async def test_slow_clients_are_cut_off_and_descriptors_return_to_baseline(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path
) -> None:
    """500 idle, trickling or stalled connections are closed by the server; probes still answer."""
    mongo_double.insert_documents(
        [{"source_id": "p1"}], db="ingestion", collection="source_configs"
    )
    port = free_port()
    keys = Keys("scc-slow")
    env = clean_env(
        SCC_MONGODB_URI=mongo_double.uri,
        SCC_REDIS_URL=redis_url,
        SCC_NAMESPACE=keys.namespace,
        SCC_HTTP_HOST="127.0.0.1",
        SCC_HTTP_PORT=str(port),
        SCC_HEARTBEAT_INTERVAL_MS="250",
        SCC_HTTP_HEADER_TIMEOUT_S="1",
        SCC_HTTP_KEEPALIVE_TIMEOUT_S="1",
        SCC_HTTP_BODY_TIMEOUT_S="1",
        SCC_LOG_LEVEL="warning",
    )
    log = (tmp_path / "service.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    redis = aioredis.Redis.from_url(redis_url)
    leader = FakeLeader(redis, keys)
    stop = asyncio.Event()
    try:
        await leader.take()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                assert time.monotonic() < deadline, "the replica never answered /health/live"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health/live")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            baseline = open_fds(proc.pid)
            clients = [asyncio.create_task(slow_client(port, i % 3, stop)) for i in range(SLOW)]
            await asyncio.sleep(0.5)
            held = open_fds(proc.pid)
            live = await http.get("/health/live")  # a normal request while they are held
            assert live.status_code == 200
            assert held >= baseline + SLOW // 2, (baseline, held)
            deadline = time.monotonic() + 20
            while open_fds(proc.pid) > baseline + 5:
                assert time.monotonic() < deadline, (baseline, held, open_fds(proc.pid))
                await asyncio.sleep(0.2)
            assert (await http.get("/health/live")).status_code == 200
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=30)
    finally:
        stop.set()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)
        await redis.aclose()
        log.close()
