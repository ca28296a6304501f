"""The replica's uvicorn configuration, with a deadline for every request head.

Why it exists: uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but
puts no limit on how long a client may take to send a request's head: a connection that
sends nothing, or one header line a second, is held forever, and a few hundred of them
exhaust the file descriptors of a replica. :class:`HeadTimeoutProtocol` closes a
connection whose request head is not complete ``header_timeout_s`` after the connection
opened or the request began; the body has its own deadline in :mod:`service.ingesting`
(``SCC_HTTP_BODY_TIMEOUT_S``), and idle keep-alive connections close after
``SCC_HTTP_KEEPALIVE_TIMEOUT_S``.

Invariant: every open connection is, at any moment, either inside a request whose head
arrived, or under one of the two timers (head, keep-alive) -- so a slow client costs a
file descriptor for a bounded time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import HttpSettings


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head is late."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, settings: HttpSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn config of a replica: address, keep-alive and request-head deadlines."""
    protocol = type(
        "ReplicaHttpProtocol",
        (HeadTimeoutProtocol,),
        {"header_timeout_s": settings.header_timeout_s},
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        timeout_keep_alive=max(1, round(settings.keepalive_timeout_s)),
        **options,
    )
