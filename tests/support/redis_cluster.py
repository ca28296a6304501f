"""A real Redis Cluster on loopback: 3 masters, each with one replica (``--cluster-replicas 1``).

Why a rig of its own: slot ownership, ``MOVED``, sharded pub/sub and a replica promoted by
the cluster itself (no Sentinel) are behaviours only real ``redis-server
--cluster-enabled yes`` processes show. Every node listens on a free 127.0.0.1 port whose
cluster bus (port + 10000) is free too, persistence is off and ``cluster-node-timeout`` is
small, so a failover takes a few seconds.

Invariant: :meth:`RedisClusterRig.start` returns only once every node reports
``cluster_state:ok``, every slot is served and a write on every master was acknowledged
by its replicas, so a test's first command (or ``WAIT``) is not raced by the cluster still
forming. Nodes are :class:`~tests.support.sentinel_group.Node` processes (kill, pause,
resume); :meth:`RedisClusterRig.owner_of` names the master serving a key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import free_port, redis_binary
from tests.support.sentinel_group import Node

#: Milliseconds a master may be unreachable before its replica is promoted: short, so a
#: killed master's replica takes over within seconds, but not so short that a node starved
#: of CPU on a busy 2-core machine is taken for dead (1 s was, now and then).
NODE_TIMEOUT_MS = 2000


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free as well."""
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair (port, port+10000) found")


class RedisClusterRig:
    """Six cluster nodes (3 masters, 3 replicas); see the module docstring."""

    def __init__(self, binary: str, *, size: int = 3) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="scc-cluster-"))
        self._cli = shutil.which("redis-cli") or "redis-cli"
        self.nodes: list[Node] = []
        for i in range(size * 2):
            node = Node(binary, self._workdir, name=f"node-{i}")
            node.port = cluster_port()
            node.extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node.dir / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            self.nodes.append(node)

    def url(self, *, scheme: str = "redis+cluster") -> str:
        """``redis+cluster://`` URL naming every node as a startup node."""
        return f"{scheme}://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, ``redis-cli --cluster create``, wait for ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [self._cli, "--cluster", "create", *addresses, "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-800:]}")
        self.wait_ok(timeout)
        self.wait_synced(timeout)

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Until a write on every master is acknowledged by all its replicas (``WAIT``).

        ``cluster_state:ok`` comes as soon as every slot has a master, and even a replica
        that reports its link up and its sync done did not always acknowledge the first
        write in the next half second (measured: 4 fresh clusters of 8), so a test's first
        ``WAIT`` (the lease confirmation, the events streams' ``min_replicas``) failed.
        """
        deadline = time.monotonic() + timeout
        pending = [n for n in self.live if self._replicas_of(n)]
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self._write_acknowledged(n)]
            if pending:
                time.sleep(0.05)
        if pending:
            raise RuntimeError(f"cluster replicas did not acknowledge a write in {timeout}s")

    @staticmethod
    def _replicas_of(node: Node) -> int:
        with node.client(timeout=0.5) as client:
            info = client.info("replication")
        return int(info.get("connected_slaves", 0)) if info.get("role") == "master" else 0

    def _write_acknowledged(self, master: Node) -> bool:
        try:
            with master.client(timeout=2) as client:
                client.set(_key_on(client), "1")
                expected = self._replicas_of(master)
                return int(client.execute_command("WAIT", expected, 200)) >= expected
        except redis.RedisError:
            return False

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on every slot's owner."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._all_ok():
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok within {timeout}s")

    def _all_ok(self) -> bool:
        owners: set[tuple[tuple[int, int, int], ...]] = set()
        for node in self.live:
            try:
                with node.client(timeout=0.5) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text:
                        return False
                    slots = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                return False
            owners.add(tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)))
        return len(owners) == 1

    @property
    def live(self) -> list[Node]:
        """The nodes running and not paused."""
        return [n for n in self.nodes if n.running and not n.paused]

    def owner_of(self, key: str) -> Node:
        """The master serving ``key``'s slot (asked of a live node)."""
        for node in self.live:
            try:
                with node.client(timeout=0.5) as client:
                    slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                        if int(start) <= slot <= int(end):
                            return self.node_on(int(master[1]))
            except redis.RedisError:
                continue
        raise RuntimeError(f"no live node names the owner of {key}")

    def replica_of(self, master: Node) -> Node:
        """A replica of ``master`` (by ``INFO replication`` of the live nodes)."""
        for node in self.live:
            with node.client(timeout=0.5) as client:
                info = client.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                return node
        raise RuntimeError(f"no replica of port {master.port}")

    def node_on(self, port: int) -> Node:
        """The node listening on ``port``."""
        return next(n for n in self.nodes if n.port == port)

    def wait_new_owner(self, key: str, old: Node, timeout: float = 20.0) -> Node:
        """Until the cluster is ok again with another master serving ``key``; that master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                owner = self.owner_of(key)
                if owner is not old and self._all_ok():
                    return owner
            time.sleep(0.05)
        raise RuntimeError(f"{key}'s slot did not move off port {old.port} within {timeout}s")

    def close(self) -> None:
        """Kill every node and remove the working directory."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.kill()
        shutil.rmtree(self._workdir, ignore_errors=True)


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterRig]:
    """A fresh 3-master, 3-replica cluster for this test (skipped without redis-server)."""
    binary = redis_binary()
    if binary is None or shutil.which("redis-cli") is None:
        message = "redis-server/redis-cli are not on PATH (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    rig = RedisClusterRig(binary)
    try:
        rig.start()
        yield rig
    finally:
        rig.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key_on(client: redis.Redis) -> str:
    """A key of a slot that ``client``'s node serves."""
    node_id = _text(client.execute_command("CLUSTER", "MYID"))
    ranges = [
        (int(start), int(end))
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS")
        if _text(master[2]) == node_id
    ]
    for i in range(10_000):
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", f"rig-probe-{i}"))
        if any(start <= slot <= end for start, end in ranges):
            return f"rig-probe-{i}"
    raise RuntimeError("no probe key found for this node's slots")
