"""``MongoDouble``: the wire double on a background thread with its own event loop.

Sync tests, async tests (whatever their loop) and fixtures all drive the same object: every
public method hops onto the double's loop and waits for the result, so the methods are
thread-safe and never touch the caller's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import bson

from .failpoints import double_fault_rule
from .server import DoubleServer
from .state import DEFAULT_COLLECTION, DEFAULT_DB, DoubleConfig
from .wire import CODEC

T = TypeVar("T")


class MongoDouble:
    """A MongoDB 7.0 replica-set primary look-alike, listening on ``host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        set_name: str = "rs0",
        advertise_host: str | None = None,
        noop_interval: float = 10.0,
    ) -> None:
        self.config = DoubleConfig(host, port, set_name, advertise_host, noop_interval)
        self._server: DoubleServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> MongoDouble:
        """Start listening (returns once the port is bound)."""
        if self._thread is not None:
            raise RuntimeError("MongoDouble already started")
        self._thread = threading.Thread(target=self._run, name="mongo-double", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("MongoDouble failed to start") from self._startup_error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = DoubleServer(self.config)
            loop.run_until_complete(self._server.start())
        except BaseException as exc:  # reported to start()'s caller
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close every connection, stop listening and join the thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> MongoDouble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.config.port

    @property
    def address(self) -> str:
        """``host:port`` as advertised in ``hello``."""
        return self.config.address

    @property
    def uri(self) -> str:
        """A direct-connection URI (``?directConnection=true``)."""
        return f"mongodb://{self.address}/?directConnection=true"

    @property
    def replica_set_uri(self) -> str:
        """A replica-set URI (``?replicaSet=<set name>``), discovered through ``hello``."""
        return f"mongodb://{self.address}/?replicaSet={self.config.set_name}"

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, fn: Callable[[DoubleServer], T]) -> T:
        server, loop = self._server, self._loop
        if server is None or loop is None or self._thread is None:
            raise RuntimeError("MongoDouble is not running; call start() first")
        if threading.current_thread() is self._thread:
            return fn(server)

        async def run() -> T:
            return fn(server)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    # -- fault hooks ----------------------------------------------------------------------
    def hangup(self) -> int:
        """Abort every open client connection now; return how many were closed."""
        return self._call(lambda s: s.hangup(None))

    def fail_commands(
        self,
        *commands: str,
        code: int = 10107,
        times: int = 1,
        code_name: str | None = None,
        errmsg: str | None = None,
        error_labels: Iterable[str] | None = None,
        close_connection: bool = False,
    ) -> None:
        """Fail the next ``times`` commands named in ``commands`` with ``code``.

        Labels default to what a 7.0 primary attaches (``ResumableChangeStreamError`` on
        change-stream aggregate/getMore for resumable codes, ``RetryableWriteError`` on
        retryable writes); ``close_connection`` hangs up instead of replying.
        """
        if not commands or times < 1:
            raise ValueError("fail_commands needs at least one command name and times >= 1")
        rule = double_fault_rule(
            list(commands),
            times=times,
            code=code,
            code_name=code_name,
            errmsg=errmsg,
            labels=None if error_labels is None else list(error_labels),
            close_connection=close_connection,
        )
        self._call(lambda s: s.state.faults.points.rules.append(rule))

    def forget_history(self) -> None:
        """Forget every change before now: older resume points get ChangeStreamHistoryLost."""
        self._call(lambda s: s.state.store.forget_history())

    def set_history_limit(self, entries: int | None) -> None:
        """Retain at most ``entries`` history entries (``None``: unbounded)."""
        self._call(lambda s: s.state.store.set_history_limit(entries))

    def set_latency(self, ms: float) -> None:
        """Delay every reply by ``ms`` milliseconds (0 disables)."""

        def apply(s: DoubleServer) -> None:
            s.state.faults.latency_ms = float(ms)

        self._call(apply)

    def clear_faults(self) -> None:
        """Drop pending fail rules, latency and the history cap."""

        def apply(s: DoubleServer) -> None:
            s.state.faults.clear()
            s.state.store.set_history_limit(None)

        self._call(apply)

    def command_counts(self) -> dict[str, int]:
        """Commands received so far, by name (``doubleFault`` itself is not counted)."""
        return self._call(lambda s: dict(s.state.faults.counts))

    def reset_command_counts(self) -> None:
        self._call(lambda s: s.state.faults.counts.clear())

    # -- data helpers ---------------------------------------------------------------------
    def insert_documents(
        self,
        documents: Iterable[dict[str, Any]],
        *,
        db: str = DEFAULT_DB,
        collection: str = DEFAULT_COLLECTION,
    ) -> int:
        """Insert directly (as real inserts: change events are recorded); returns the count."""
        docs = list(documents)

        def apply(s: DoubleServer) -> int:
            for doc in docs:
                s.state.store.insert(db, collection, doc, private=True)
            return len(docs)

        return self._call(apply)

    def documents(
        self, *, db: str = DEFAULT_DB, collection: str = DEFAULT_COLLECTION
    ) -> list[dict[str, Any]]:
        """A snapshot (copies) of a collection's documents in natural order."""

        def read(s: DoubleServer) -> list[dict[str, Any]]:
            items = s.state.store.find(db, collection, {})
            return [bson.decode(item.raw, codec_options=CODEC) for item in items]

        return self._call(read)

    def drop_collection(
        self, *, db: str = DEFAULT_DB, collection: str = DEFAULT_COLLECTION
    ) -> None:
        """Drop a collection (streams on it get ``drop`` then ``invalidate``)."""
        self._call(lambda s: s.state.store.drop(db, collection))

    def connection_count(self) -> int:
        """Open client connections (monitoring connections included)."""
        return self._call(lambda s: len(s.state.connections))
