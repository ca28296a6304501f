"""A deliberately tiny HTTP/1.1 server for ``/health/live``, ``/health/ready`` and ``/metrics``.

The watcher needs three GET endpoints and nothing else; a web framework would bring its own
signal handlers and lifespan, and the watcher's shutdown order (finish the publish, save
the token, release the lease) must stay in its own hands. One request per connection
(``Connection: close``), a bounded request size and read timeout, and every connection
handler is tracked so :meth:`HealthServer.close` leaves no task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

import orjson
import structlog

log = structlog.get_logger("watcher.serving")

_MAX_HEAD: Final = 8192
_READ_TIMEOUT: Final = 5.0
_REASONS: Final = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}

Readiness = Callable[[], tuple[bool, dict[str, Any]]]
MetricsBody = Callable[[], tuple[bytes, str]]


class HealthServer:
    """Serves the health and metrics endpoints on ``host:port`` (0 picks a free port)."""

    def __init__(self, *, host: str, port: int, ready: Readiness, metrics: MetricsBody) -> None:
        self._host = host
        self._port = port
        self._ready = ready
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and listen."""
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        log.info("http listening", host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop listening and end every connection handler."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` (start first if needed), then :meth:`close`."""
        if self._server is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.set_name("watcher.http-connection")
            self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        except (
            ConnectionError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(_READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        status, body, ctype = self._route(method, target)
        head_only = method == "HEAD"
        writer.write(
            (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            + (b"" if head_only else body)
        )
        await writer.drain()

    def _route(self, method: str, target: str) -> tuple[int, bytes, str]:
        if target not in ("/health/live", "/health/ready", "/metrics"):
            return _json(404, {"error": f"no such endpoint {target!r}"})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "only GET"})
        if target == "/health/live":
            return _json(200, {"status": "ok"})
        if target == "/health/ready":
            ok, detail = self._ready()
            return _json(200 if ok else 503, {"status": "ok" if ok else "not ready", **detail})
        body, ctype = self._metrics()
        return 200, body, ctype


def _json(status: int, payload: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, orjson.dumps(payload), "application/json"
