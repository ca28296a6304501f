"""A real Redis Sentinel group on loopback: 1 primary, 2 replicas, 3 sentinels (quorum 2).

Why a rig of its own: a Redis failover (promotion of an asynchronously replicated replica)
is a different failure from a Redis restart, and only real ``redis-server`` processes --
the data nodes with ``--replicaof``, the sentinels as ``redis-server sentinel.conf
--sentinel`` -- show what clients see through one. Every process listens on a free
127.0.0.1 port (never 6379), persistence is off, and ``down-after-milliseconds`` is small
so a failover takes about a second or two.

Invariant: :meth:`SentinelGroup.start` returns only once every sentinel agrees on the
primary and sees both replicas and the two other sentinels, so a test's first failover is
not raced by the group still discovering itself. Helpers kill, pause and resume any node,
ask for a planned ``SENTINEL FAILOVER``, and wait until the sentinels name a new primary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import free_port, redis_binary

MASTER_NAME = "sccmaster"


class Node:
    """One ``redis-server`` process (a data node or a sentinel) on a fixed port."""

    def __init__(self, binary: str, workdir: Path, *, name: str, sentinel: bool = False) -> None:
        self.binary, self.name, self.sentinel = binary, name, sentinel
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir()
        self.extra: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def _argv(self) -> list[str]:
        common = ["--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no"]
        common += ["--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]
        common += ["--logfile", str(self.dir / "log.txt")]
        if self.sentinel:
            return [self.binary, str(self.dir / "sentinel.conf"), "--sentinel", *common]
        data = ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        return [self.binary, *common, *data, *self.extra]

    def start(self, timeout: float = 10.0) -> None:
        """Start the process and wait until it answers PING."""
        if self.running:
            return
        self.proc = subprocess.Popen(
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.paused = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "log.txt").read_text(errors="replace")[-500:]
                raise RuntimeError(f"{self.name} on port {self.port} exited at start: {log}")
            try:
                with self.client(timeout=0.2) as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} on port {self.port} did not answer within {timeout}s")

    @property
    def running(self) -> bool:
        """True while the process exists (it may be paused)."""
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A synchronous client of this node."""
        return redis.Redis(port=self.port, socket_connect_timeout=timeout, socket_timeout=timeout)

    def kill(self) -> None:
        """SIGKILL (after SIGCONT, so a paused node dies too)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc, self.paused = None, False

    def pause(self) -> None:
        """SIGSTOP: sockets stay open, nothing is answered."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False


class SentinelGroup:
    """Primary + 2 replicas + 3 sentinels; see the module docstring."""

    def __init__(self, binary: str, *, down_after_ms: int = 500, failover_timeout_ms: int = 3000):
        self._workdir = Path(tempfile.mkdtemp(prefix="scc-sentinel-"))
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.data = [Node(binary, self._workdir, name=f"redis-{i}") for i in range(3)]
        self.sentinels = [
            Node(binary, self._workdir, name=f"sentinel-{i}", sentinel=True) for i in range(3)
        ]
        for replica in self.data[1:]:
            replica.extra = ["--replicaof", "127.0.0.1", str(self.data[0].port)]

    def url(self, *, db: int = 0, scheme: str = "redis+sentinel") -> str:
        """The ``redis+sentinel://`` URL of this group."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{MASTER_NAME}/{db}"

    def start(self, timeout: float = 20.0) -> None:
        """Start every node and wait until the group has discovered itself."""
        for node in self.data:
            node.start()
        primary = self.data[0].port
        for sentinel in self.sentinels:
            (sentinel.dir / "sentinel.conf").write_text(
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
            sentinel.start()
        self.wait_settled(timeout=timeout)

    def node_on(self, port: int) -> Node:
        """The data node listening on ``port``."""
        return next(n for n in self.data if n.port == port)

    def primary_port(self, *, via: int = 0) -> int | None:
        """The primary's port as sentinel ``via`` names it (None if it cannot say)."""
        try:
            with self.sentinels[via].client() as client:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        except redis.RedisError:
            return None
        return int(addr[1]) if addr else None

    @property
    def primary(self) -> Node:
        """The data node the first reachable sentinel names as primary."""
        for via in range(len(self.sentinels)):
            if not self.sentinels[via].running or self.sentinels[via].paused:
                continue
            port = self.primary_port(via=via)
            if port is not None:
                return self.node_on(port)
        raise RuntimeError("no sentinel names a primary")

    def wait_settled(self, timeout: float = 20.0) -> int:
        """Until every live sentinel names one primary that has 2 live replicas: its port."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                port = self._settled_port()
                if port is not None:
                    return port
            except redis.RedisError as e:
                last = str(e)
            time.sleep(0.05)
        raise RuntimeError(f"sentinel group did not settle within {timeout}s {last}")

    def _settled_port(self) -> int | None:
        live = [s for s in self.sentinels if s.running and not s.paused]
        ports = {self.primary_port(via=self.sentinels.index(s)) for s in live}
        if len(ports) != 1 or None in ports:
            return None
        port = ports.pop()
        assert port is not None
        for sentinel in live:
            with sentinel.client() as client:
                master = client.sentinel_master(MASTER_NAME)
                replicas = client.sentinel_slaves(MASTER_NAME)
            if master["is_sdown"] or master["num-other-sentinels"] < 2:
                return None
            healthy = [r for r in replicas if not r["is_sdown"] and not r["is_disconnected"]]
            if len(healthy) < sum(1 for n in self.data if n.running and n.port != port):
                return None
        for node in self.data:
            if not node.running or node.paused:
                continue
            with node.client() as client:
                info = client.info("replication")
            wanted = "master" if node.port == port else "slave"
            if info.get("role") != wanted:
                return None
            if wanted == "slave" and (
                info.get("master_port") != port or info.get("master_link_status") != "up"
            ):
                return None
        return port

    def wait_new_primary(self, old: int, timeout: float = 15.0) -> int:
        """Until a live sentinel names a primary other than port ``old``; the new port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for via, sentinel in enumerate(self.sentinels):
                if sentinel.running and not sentinel.paused:
                    port = self.primary_port(via=via)
                    if port is not None and port != old:
                        return port
            time.sleep(0.01)
        raise RuntimeError(f"no new primary within {timeout}s (old {old})")

    def failover(self) -> None:
        """A planned ``SENTINEL FAILOVER`` (the old primary stays up and writable meanwhile)."""
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def close(self) -> None:
        """Kill every process and remove the working directory."""
        for node in [*self.sentinels, *self.data]:
            with contextlib.suppress(Exception):
                node.kill()
        shutil.rmtree(self._workdir, ignore_errors=True)


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A fresh, settled Sentinel group for this test (skipped without redis-server)."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server is not on PATH (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    group = SentinelGroup(binary)
    try:
        group.start()
        yield group
    finally:
        group.close()
