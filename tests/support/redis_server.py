"""A real ``redis-server`` per test session, on a free port, that a test may kill and restart.

Persistence is off (``--save "" --appendonly no``), so a restart loses every key, exactly
the "Redis died" failure the system must survive. The database is flushed before every
test that asks for ``redis_url``; a test that stopped or paused the server gets it back
running for the next one. Without the binary, integration tests are skipped with the
reason locally and fail in CI (``CI`` set), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on a fixed port chosen at construction."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="scc-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        #: More ``redis-server`` arguments (e.g. ``["--replicaof", "127.0.0.1", "6390"]``).
        self.extra: list[str] = []

    @property
    def url(self) -> str:
        """``redis://`` URL of this server (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (same port) and wait until it answers PING."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    @property
    def running(self) -> bool:
        """True while the process exists (it may be paused)."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``); every key is gone after a restart."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self._proc.wait(timeout=10)
        self._proc = None

    def restart(self, *, kill: bool = True) -> None:
        """Kill and start again on the same port: data lost, clients must reconnect."""
        self.stop(kill=kill)
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung Redis)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        """Drop every key (FLUSHALL)."""
        with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
            client.flushall()

    def close(self) -> None:
        """Stop the server and remove its working directory."""
        self.stop(kill=True)
        shutil.rmtree(self._dir, ignore_errors=True)


def redis_binary() -> str | None:
    """Path of ``redis-server`` on PATH (or ``SCC_REDIS_SERVER``)."""
    return os.environ.get("SCC_REDIS_SERVER") or shutil.which("redis-server")


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    """The session's redis-server; skipped locally / failed in CI when the binary is absent."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server is not on PATH (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> RedisServer:
    """The session's redis-server, running and empty at the start of this test."""
    if redis_server_session.running:
        redis_server_session.resume()
    else:
        redis_server_session.start()
    redis_server_session.flush()
    return redis_server_session


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of an empty, running redis-server for this test."""
    return redis_server.url
