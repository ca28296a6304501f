"""Run the whole system as real processes on this machine: tests, chaos, demo, benchmarks.

A :class:`Fleet` owns a redis-server, a MongoDB wire double (``python -m
tests.support.mongo_double``), watchers (``python -m watcher``) and service replicas
(``python -m service``), each a child process with its own log file, configured only
through ``SCC_*`` variables exactly as in production. Everything it started is stopped
when the fleet is closed, whatever happened in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.redis_server import RedisServer, free_port, redis_binary

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    """One child process with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> Child:
        """Start (or restart) the process, appending to its log."""
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def pid(self) -> int:
        """Process id (the process must have been started)."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True while the process runs (or is paused)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        """Base URL of its HTTP server."""
        return f"http://127.0.0.1:{self.port}"

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` if the process is alive."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> int | None:
        """SIGTERM (or SIGKILL) and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        status = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        return status

    def log_text(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_http(self, path: str, *, status: int = 200, timeout: float = 30.0) -> None:
        """Poll ``path`` until it answers ``status``; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc and self.proc.returncode}):\n"
                    f"{self.log_text()[-3000:]}"
                )
            try:
                last = httpx.get(self.url + path, timeout=1.0).status_code
                if last == status:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} {path} not {status} after {timeout}s (last: {last}):\n"
            f"{self.log_text()[-3000:]}"
        )


@dataclass
class Fleet:
    """A redis-server, a MongoDB double, and any number of watchers and replicas."""

    namespace: str = "scc"
    database: str = "ingestion"
    collection: str = "source_configs"
    extra_env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="scc-fleet-")))
    redis: RedisServer | None = None
    mongo: Child | None = None
    mongo_uri: str = ""
    watchers: dict[str, Child] = field(default_factory=dict)
    replicas: dict[str, Child] = field(default_factory=dict)

    def start_redis(self) -> RedisServer:
        """Start the fleet's own redis-server on a free port."""
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
        self.redis = RedisServer(binary)
        self.redis.start()
        return self.redis

    def start_mongo(self, *, seed: Path | None = None, timeout: float = 20.0) -> str:
        """Start the MongoDB wire double as a process; returns its URI."""
        argv = [
            sys.executable,
            "-m",
            "tests.support.mongo_double",
            "--port",
            "0",
            "--db",
            self.database,
            "--collection",
            self.collection,
        ]
        if seed is not None:
            argv += ["--seed", str(seed)]
        log = self.workdir / "mongo.log"
        with open(log, "ab") as err:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if line.startswith("MONGO_DOUBLE_READY"):
                self.mongo_uri = line.split(maxsplit=1)[1].strip()
                break
            if not line and proc.poll() is not None:
                raise RuntimeError(f"mongo double exited: {log.read_text()[-2000:]}")
        else:
            proc.kill()
            raise TimeoutError("mongo double did not report ready")
        self.mongo = Child("mongo", argv, {}, log, proc=proc)
        return self.mongo_uri

    def env(self, instance_id: str, port: int, **extra: str) -> dict[str, str]:
        """The ``SCC_*`` environment of one fleet process."""
        assert self.redis is not None and self.mongo_uri
        base = {k: v for k, v in os.environ.items() if not k.startswith("SCC_")}
        return {
            **base,
            "SCC_MONGODB_URI": self.mongo_uri,
            "SCC_MONGODB_DATABASE": self.database,
            "SCC_MONGODB_COLLECTION": self.collection,
            "SCC_REDIS_URL": self.redis.url,
            "SCC_NAMESPACE": self.namespace,
            "SCC_INSTANCE_ID": instance_id,
            "SCC_HTTP_HOST": "127.0.0.1",
            "SCC_HTTP_PORT": str(port),
            "SCC_LOG_FORMAT": "json",
            **self.extra_env,
            **extra,
        }

    def start_watcher(self, instance_id: str, **env: str) -> Child:
        """Start one watcher process (``python -m watcher``)."""
        port = free_port()
        child = Child(
            instance_id,
            [sys.executable, "-m", "watcher"],
            self.env(instance_id, port, **env),
            self.workdir / f"{instance_id}.log",
            port=port,
        ).start()
        self.watchers[instance_id] = child
        return child

    def start_replica(self, instance_id: str, *, wait_ready: bool = True, **env: str) -> Child:
        """Start one service replica (``python -m service``) and wait until it is ready."""
        port = free_port()
        child = Child(
            instance_id,
            [sys.executable, "-m", "service"],
            self.env(instance_id, port, **env),
            self.workdir / f"{instance_id}.log",
            port=port,
        ).start()
        self.replicas[instance_id] = child
        if wait_ready:
            child.wait_http("/health/ready")
        return child

    def close(self) -> None:
        """Stop every process this fleet started (replicas, watchers, MongoDB, Redis)."""
        for child in [*self.replicas.values(), *self.watchers.values()]:
            child.stop(kill=True)
        if self.mongo is not None:
            self.mongo.stop(kill=True)
        if self.redis is not None:
            self.redis.close()


@contextmanager
def running_fleet(**kwargs: Any) -> Iterator[Fleet]:
    """A started redis-server + MongoDB double; watchers and replicas are up to the caller."""
    fleet = Fleet(**kwargs)
    try:
        fleet.start_redis()
        fleet.start_mongo()
        yield fleet
    finally:
        fleet.close()
