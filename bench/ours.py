"""The one place where the benchmarks bind to the code under test (``service``, ``watcher``).

Why a module of its own: the product's packages are written alongside the benchmarks;
keeping every use of their APIs here means a rename breaks one file, loudly, instead of
seven. Everything here runs the product's own code paths unchanged; where a benchmark
needs to *observe* them (the moment a change lands in a replica's cache), it wraps a
public method of the instance and calls through.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from bench.common import KEY_FIELD, BenchError, tail, wait_until
from service.caching import ConfigCache
from service.event_sinks import IngestCounters
from service.replica import Replica, run_replica
from service.snapshot import Snapshot
from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.keys import Keys
from shared.messages import Message, encode, to_ejson
from shared.settings import load_settings
from tests.support.fleet import ROOT, Fleet
from tests.support.redis_server import RedisServer, free_port, redis_binary
from watcher.electing import Leadership, RedisLease, Term
from watcher.publishing import Publisher, RedisChannel, run_heartbeats
from watcher.reporting import WatcherStats
from watcher.timing import SYSTEM_CLOCK
from watcher.translating import Draft

DATABASE = "ingestion"
COLLECTION = "source_configs"
#: Field the benchmarks stamp into documents to recognise a change when it is applied.
MARK = "bench_mark"


# --------------------------------------------------------------------------- the cache


@dataclass
class LookupSubject:
    """Our cache loaded with documents, and the two ways it offers to read a hit."""

    peek: Callable[[str], Any]
    aget: Callable[[str], Awaitable[Any]]
    closer: Callable[[], Awaitable[None]]

    async def close(self) -> None:
        """Release whatever the cache holds (in-flight reads)."""
        await self.closer()


class _NoStore:
    """A ConfigStore that must never be called: the benchmark only looks up hits."""

    async def load_all(self) -> list[dict[str, Any]]:
        raise BenchError("the lookup benchmark missed the cache (load_all)")

    async def find_by_key(self, key: str) -> dict[str, Any] | None:
        raise BenchError(f"the lookup benchmark missed the cache (find_by_key {key!r})")

    async def find_by_container(self, container: str) -> list[dict[str, Any]]:
        raise BenchError(f"the lookup benchmark missed the cache ({container!r})")


async def lookup_subject(docs: list[dict[str, Any]]) -> LookupSubject:
    """A warm, live :class:`ConfigCache` holding ``docs``, as the subscriber leaves it.

    ``peek`` is the synchronous hot path (``None`` would mean "take the async path");
    ``aget`` is ``await get_config_by_source_id``.
    """
    cache = ConfigCache(
        store=_NoStore(), key_field=KEY_FIELD, negative_ttl_s=2.0, max_staleness_s=30.0
    )
    snapshot, skipped = Snapshot.build(docs, key_field=KEY_FIELD)
    if skipped:
        raise BenchError(f"{skipped} generated documents lack a key")
    cache.install(snapshot, fresh_at=time.monotonic())
    cache.set_stream_active(True)
    probe = docs[len(docs) // 2][KEY_FIELD]
    if cache.peek(probe) is None or await cache.get_config_by_source_id(probe) is None:
        raise BenchError("a warm, live cache did not answer a hit from memory")
    return LookupSubject(peek=cache.peek, aget=cache.get_config_by_source_id, closer=cache.aclose)


def digest(docs: Iterable[dict[str, Any]]) -> str:
    """An order-independent fingerprint of documents (as extended JSON, keys sorted)."""
    h = hashlib.sha256()
    encoded = sorted(orjson.dumps(to_ejson(d), option=orjson.OPT_SORT_KEYS) for d in docs)
    for line in encoded:
        h.update(line)
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- the publisher


class FanoutPublisher:
    """The watcher's publish path (``Publisher`` + ``RedisChannel``) holding a real lease.

    It also sends heartbeats at the watcher's interval, as a leader does, so replicas
    stay ``stream_active`` and never resync for silence during a run.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, publisher: Publisher, term: Term) -> None:
        self._redis = redis
        self._keys = keys
        self._publisher = publisher
        self._term = term
        self._stop = asyncio.Event()
        self._heartbeats: asyncio.Task[None] | None = None

    @classmethod
    async def create(
        cls,
        redis: aioredis.Redis,
        *,
        namespace: str,
        heartbeat_interval_ms: int = 1000,
        batch_max_changes: int = 1,
    ) -> FanoutPublisher:
        """Take the lease of ``namespace`` (it must be free) and start heartbeats.

        ``batch_max_changes`` bounds what :meth:`publish_many` puts in one message.
        """
        keys = Keys(namespace)
        instance_id = "bench-publisher"
        epoch = await RedisLease(redis, keys, instance_id).acquire(3_600_000)
        if epoch <= 0:
            raise BenchError(f"the lease of namespace {namespace!r} is held by someone else")
        leadership = Leadership()
        term = Term(epoch=epoch, acquired_at=time.monotonic())
        leadership.grant(term, valid_until=time.monotonic() + 3_600)
        stats = WatcherStats(instance_id=instance_id, started_at=time.time())
        publisher = Publisher(
            channel=RedisChannel(redis, keys, instance_id),
            leadership=leadership,
            stats=stats,
            clock=SYSTEM_CLOCK,
            batch_max_changes=batch_max_changes,
        )
        self = cls(redis, keys, publisher, term)
        self._heartbeats = asyncio.create_task(
            run_heartbeats(
                publisher,
                term,
                self._stop,
                interval_ms=heartbeat_interval_ms,
                stats=stats,
                clock=SYSTEM_CLOCK,
            ),
            name="bench-heartbeats",
        )
        return self

    @property
    def channel(self) -> str:
        """The invalidation channel."""
        return self._keys.invalidations

    def wire_form(self, doc: dict[str, Any], *, seq: int) -> bytes:
        """The bytes a message for ``doc`` would have (the raw baseline publishes these)."""
        message = Message(
            kind="upsert",
            seq=seq,
            epoch=self._term.epoch,
            key=doc[KEY_FIELD],
            doc=doc,
            op="update",
            published_at=time.time(),
        )
        return encode(message)

    async def publish(self, doc: dict[str, Any]) -> int:
        """Publish an upsert of ``doc`` as the watcher does; the seq it got."""
        draft = Draft(kind="upsert", op="update", key=doc[KEY_FIELD], doc=doc)
        return await self._publisher.send(draft, self._term)

    async def publish_many(self, docs: list[dict[str, Any]]) -> list[int]:
        """Publish upserts of ``docs`` as the batching watcher does (``send_batch``); seqs."""
        drafts = [Draft(kind="upsert", op="update", key=d[KEY_FIELD], doc=d) for d in docs]
        return await self._publisher.send_batch(drafts, self._term)

    async def close(self) -> None:
        """Stop the heartbeats (the lease is left to expire with the server)."""
        self._stop.set()
        if self._heartbeats is not None:
            await self._heartbeats


# --------------------------------------------------------------------------- replicas


@dataclass
class ReplicaHost:
    """One replica as ``python -m service`` runs it, minus HTTP (``run_replica``).

    ``applied`` receives ``doc[MARK] → perf_counter_ns`` each time an upsert carrying a
    mark is applied to the cache (the subscriber's ``apply_upsert`` call, wrapped).
    """

    redis_url: str
    namespace: str
    mongo_uri: str
    database: str
    collection: str
    instance_id: str
    applied: dict[int, int]
    heartbeat_interval_ms: int = 1000
    replica: Replica | None = field(default=None, init=False)

    async def run(self, ready: asyncio.Event) -> None:
        """Start the replica, set ``ready`` once it reports ready, run until cancelled."""
        settings = load_settings(
            mongo={"uri": self.mongo_uri, "database": self.database, "collection": self.collection},
            redis={"url": self.redis_url, "namespace": self.namespace},
            timing={"heartbeat_interval_ms": self.heartbeat_interval_ms},
            process={"instance_id": self.instance_id, "log_level": "warning"},
        )
        async with run_replica(settings, events=IngestCounters()) as replica:
            self.replica = replica
            _observe(replica.cache, self.applied)
            await wait_until(
                lambda: replica.readiness()[0], what=f"{self.instance_id} ready", within_s=60
            )
            ready.set()
            await asyncio.Event().wait()

    async def report(self) -> dict[str, Any]:
        """Cache fingerprint, size, position and resync counts, for divergence checks."""
        replica = self.replica
        if replica is None:
            raise BenchError(f"replica {self.instance_id} never started")
        state = replica.subscriber.state
        docs = list(replica.cache.snapshot.by_key.values())
        return {
            "instance_id": self.instance_id,
            "digest": digest(docs),
            "size": len(docs),
            "last_seq": state.last_seq,
            "epoch": state.epoch,
            "resyncs": {k: v for k, v in state.resyncs.items() if v},
            "rejected": {k: v for k, v in state.rejected.items() if v},
            "duplicates": state.duplicates,
            "store_reads": replica.cache.store_reads,
        }


def _observe(cache: ConfigCache, applied: dict[int, int]) -> None:
    original = cache.apply_upsert
    clock = time.perf_counter_ns

    def apply_upsert(key: str, doc: dict[str, Any], *, reason: str = "upsert") -> None:
        original(key, doc, reason=reason)
        mark = doc.get(MARK)
        if mark is not None:
            applied[mark] = clock()

    cache.apply_upsert = apply_upsert  # type: ignore[method-assign]


# --------------------------------------------------------------------------- MongoDB double


@dataclass
class MongoDoubleProcess:
    """``python -m tests.support.mongo_double`` as a child process."""

    proc: subprocess.Popen[bytes]
    uri: str
    log: IO[bytes]

    async def close(self) -> None:
        """Stop the process."""
        if self.proc.poll() is None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


def _spawn_double(log_path: Path) -> MongoDoubleProcess:
    argv = [sys.executable, "-m", "tests.support.mongo_double", "--port", "0"]
    argv += ["--db", DATABASE, "--collection", COLLECTION]
    log = open(log_path, "ab")  # closed by MongoDoubleProcess.close
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.startswith("MONGO_DOUBLE_READY"):
            return MongoDoubleProcess(proc, line.split(maxsplit=1)[1].strip(), log)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    log.close()
    raise BenchError(f"mongo double did not start:\n{tail(log_path)}")


async def start_mongo_double(docs: list[dict[str, Any]], log_dir: Path) -> MongoDoubleProcess:
    """A MongoDB double process holding ``docs`` in ``ingestion.source_configs``."""
    double = await asyncio.to_thread(_spawn_double, log_dir / "mongo-double.log")
    try:
        await seed(double.uri, docs)
    except BaseException:
        await double.close()
        raise
    return double


@asynccontextmanager
async def mongo_double(docs: list[dict[str, Any]], log_dir: Path) -> AsyncIterator[str]:
    """A seeded MongoDB double process for the duration of the block; yields its URI."""
    double = await start_mongo_double(docs, log_dir)
    try:
        yield double.uri
    finally:
        await double.close()


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    """A redis-server of our own on a free port, stopped (and its directory removed) after."""
    binary = redis_binary()
    if binary is None:
        raise BenchError("redis-server is not on PATH (apt-get install -y redis-server)")
    server = RedisServer(binary)
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def seed(uri: str, docs: list[dict[str, Any]], *, chunk_bytes: int = 8_000_000) -> None:
    """Insert ``docs`` through the double's ``seed`` control verb, in chunks under 16 MB."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **MONGO_DOCUMENT_OPTIONS)
    try:
        chunk: list[dict[str, Any]] = []
        size = 0
        for doc in docs:
            chunk.append(doc)
            size += len(orjson.dumps(to_ejson(doc)))
            if size >= chunk_bytes:
                await _seed_chunk(client, chunk)
                chunk, size = [], 0
        if chunk:
            await _seed_chunk(client, chunk)
    finally:
        await client.close()


async def _seed_chunk(
    client: AsyncMongoClient[dict[str, Any]], chunk: list[dict[str, Any]]
) -> None:
    reply = await client.admin.command(
        {"doubleFault": "seed", "db": DATABASE, "collection": COLLECTION, "documents": chunk}
    )
    if reply.get("inserted") != len(chunk):
        raise BenchError(f"double seeded {reply.get('inserted')} of {len(chunk)} documents")


async def command_counts(client: AsyncMongoClient[Any], *, reset: bool = False) -> dict[str, int]:
    """The double's per-command-name counters (optionally reset them)."""
    reply = await client.admin.command({"doubleFault": "commandCounts", "reset": reset})
    return {str(k): int(v) for k, v in reply["counts"].items()}


# --------------------------------------------------------------------------- fleets


@asynccontextmanager
async def fleet(
    docs: list[dict[str, Any]], *, namespace: str, workdir: Path, **extra_env: str
) -> AsyncIterator[Fleet]:
    """A redis-server and a MongoDB double holding ``docs``, closed on exit."""
    f = Fleet(
        namespace=namespace,
        workdir=workdir,
        extra_env={"SCC_LOG_LEVEL": "warning", **extra_env},
    )
    try:
        await asyncio.to_thread(f.start_redis)
        await asyncio.to_thread(f.start_mongo)
        await seed(f.mongo_uri, docs)
        yield f
    finally:
        await asyncio.to_thread(f.close)


@asynccontextmanager
async def ingest_servers(
    docs: list[dict[str, Any]], workdir: Path
) -> AsyncIterator[dict[str, tuple[str, int]]]:
    """Ours (a replica + a watcher) and the do-nothing app: subject → (base URL, pid)."""
    async with fleet(docs, namespace="benchingest", workdir=workdir) as f:
        await asyncio.to_thread(f.start_watcher, "bench-watcher")
        replica = await asyncio.to_thread(f.start_replica, "bench-replica")
        port = free_port()
        log_path = f.workdir / "noop.log"
        noop = await asyncio.to_thread(_spawn_noop, port, log_path)
        try:
            url = f"http://127.0.0.1:{port}"
            await _wait_http(url + "/health/live", noop)
            yield {"ours": (replica.url, replica.pid), "noop": (url, noop.pid)}
        finally:
            noop.terminate()
            await asyncio.to_thread(noop.wait, 10)


def _spawn_noop(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.ingest", "--serve-noop", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _wait_http(url: str, proc: subprocess.Popen[bytes], within_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{url} server exited with {proc.returncode}")
            with suppress(httpx.HTTPError):
                if (await client.get(url, timeout=1.0)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise BenchError(f"{url} did not answer within {within_s}s")


def serve_like_service(app: Any, *, port: int) -> None:
    """Serve ``app`` with uvicorn configured as ``service.__main__.serve`` configures it."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
