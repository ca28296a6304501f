"""A real Redis primary and a replica whose replication stream arrives late, on demand.

Why it exists: a subscription on a Redis replica sees every PUBLISH after the primary ran
it, by the replication lag. To prove the start-up protocol exact under lag, the test needs
lag it controls: the replica replicates through :class:`DelayingProxy`, an asyncio TCP
proxy on loopback that passes the replica's own bytes to the primary at once and holds the
primary's bytes (the replication stream) for ``delay_s`` -- in order, never dropped --
while the replica itself keeps answering its clients at once (SUBSCRIBE is confirmed
immediately, messages come late). Both data nodes are the Sentinel rig's
:class:`~tests.support.sentinel_group.Node` (free ports, no persistence).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.redis_server import free_port, redis_binary
from tests.support.sentinel_group import Node


class DelayingProxy:
    """Forwards ``listen_port`` to ``target_port``; bytes from the target wait ``delay_s``."""

    def __init__(self, target_port: int, *, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on :attr:`port`."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        for coro in (self._pipe(down_r, up_w, delayed=False), self._pipe(up_r, down_w, True)):
            task = asyncio.create_task(coro, name="lagging-proxy-pipe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer), name="lagging-proxy-send")
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + (self.delay_s if delayed else 0.0), chunk))
        except OSError:
            pass
        finally:
            await queue.put((0.0, b""))
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await sender

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class LaggingPair:
    """The primary, its replica (behind the proxy) and the proxy that sets the lag."""

    primary: Node
    replica: Node
    proxy: DelayingProxy

    @property
    def primary_url(self) -> str:
        """``redis://`` URL of the primary."""
        return f"redis://127.0.0.1:{self.primary.port}/0"

    @property
    def replica_url(self) -> str:
        """``redis://`` URL of the replica."""
        return f"redis://127.0.0.1:{self.replica.port}/0"


def _linked(node: Node) -> bool:
    with node.client() as client:
        return client.info("replication").get("master_link_status") == "up"


@asynccontextmanager
async def lagging_pair() -> AsyncIterator[LaggingPair]:
    """A primary and a replica linked through a :class:`DelayingProxy` (no delay yet)."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="scc-lagging-"))
    primary = Node(binary, workdir, name="primary")
    replica = Node(binary, workdir, name="replica")
    proxy = DelayingProxy(primary.port)
    try:
        primary.start()
        await proxy.start()
        replica.extra = ["--replicaof", "127.0.0.1", str(proxy.port)]
        await asyncio.to_thread(replica.start)
        deadline = time.monotonic() + 15
        while not await asyncio.to_thread(_linked, replica):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not link to the primary within 15 s")
            await asyncio.sleep(0.05)
        yield LaggingPair(primary, replica, proxy)
    finally:
        for node in (replica, primary):
            with contextlib.suppress(redis.RedisError, OSError, RuntimeError):
                node.kill()
        await proxy.close()
        shutil.rmtree(workdir, ignore_errors=True)
