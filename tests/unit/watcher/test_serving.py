"""The tiny health/metrics HTTP server: routes, status codes, and a clean close."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from watcher.serving import HealthServer


async def test_routes_answer_and_close_leaves_nothing_running() -> None:
    """live is 200, ready follows the callback (200/503), metrics is the body; 404 otherwise."""
    ready: dict[str, Any] = {"ok": False}
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        ready=lambda: (ready["ok"], {"role": "standby"}),
        metrics=lambda: (b"scc_watcher_is_leader 0.0\n", "text/plain; version=0.0.4"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(stop), name="test.http")
    while True:
        try:
            port = server.port
            break
        except RuntimeError:
            await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/health/live")).status_code == 200
        not_ready = await client.get("/health/ready")
        assert not_ready.status_code == 503 and not_ready.json()["role"] == "standby"
        ready["ok"] = True
        assert (await client.get("/health/ready")).status_code == 200
        metrics = await client.get("/metrics")
        assert metrics.text.startswith("scc_watcher_is_leader")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert (await client.get("/nope")).status_code == 404
        assert (await client.post("/metrics")).status_code == 405
    stop.set()
    await task


async def test_a_client_that_sends_garbage_or_nothing_does_not_break_the_server() -> None:
    """Malformed or truncated requests are dropped; the server keeps answering."""
    server = HealthServer(
        host="127.0.0.1", port=0, ready=lambda: (True, {}), metrics=lambda: (b"", "text/plain")
    )
    await server.start()
    try:
        for payload in (b"\r\n\r\n", b"GARBAGE\r\n\r\n", b"GET /health/live"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(payload)
            writer.write_eof()
            await reader.read()
            writer.close()
            await writer.wait_closed()
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/health/live")
            assert answer.status_code == 200
    finally:
        await server.close()
