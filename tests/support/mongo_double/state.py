"""Shared server state: config, cursors, fail points, topology version, command registry.

Everything here is confined to the double's event loop; the threaded facade in
``double.py`` hops onto that loop before touching it, so no lock is needed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bson.int64 import Int64
from bson.objectid import ObjectId

from .changestreams import StreamCursor
from .errors import CommandError, bad_value
from .failpoints import FailPoints
from .store import Store

if TYPE_CHECKING:
    from .server import Connection

DEFAULT_DB = "ingestion"
DEFAULT_COLLECTION = "source_configs"


@dataclass(slots=True)
class DoubleConfig:
    """How the double listens and how it describes itself in ``hello``."""

    host: str = "127.0.0.1"
    port: int = 0
    set_name: str = "rs0"
    advertise_host: str | None = None
    noop_interval: float = 10.0  # the primary's periodic no-op write (periodicNoopIntervalSecs)

    @property
    def address(self) -> str:
        return f"{self.advertise_host or self.host}:{self.port}"


@dataclass(slots=True)
class FindCursor:
    """The remaining, already encoded documents of a find or aggregate."""

    id: int
    ns: str
    docs: list[bytes]
    offset: int = 0


Cursor = FindCursor | StreamCursor


class Cursors:
    """Open cursors by id (ids are random positive 63-bit integers, like the server's)."""

    def __init__(self) -> None:
        self._open: dict[int, Cursor] = {}

    def register(self, cursor: Cursor) -> int:
        cursor_id = random.randint(1, 2**63 - 1)
        while cursor_id in self._open:
            cursor_id = random.randint(1, 2**63 - 1)
        cursor.id = cursor_id
        self._open[cursor_id] = cursor
        return cursor_id

    def get(self, cursor_id: int) -> Cursor:
        cursor = self._open.get(cursor_id)
        if cursor is None:
            raise CommandError(43, f"cursor id {cursor_id} not found")
        return cursor

    def peek(self, cursor_id: int) -> Cursor | None:
        return self._open.get(cursor_id)

    def kill(self, cursor_id: int) -> bool:
        return self._open.pop(cursor_id, None) is not None

    def __len__(self) -> int:
        return len(self._open)


@dataclass(slots=True)
class Faults:
    """Injected faults (fail points, latency) and the per-command counters."""

    points: FailPoints = field(default_factory=FailPoints)
    latency_ms: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        self.points.clear()
        self.latency_ms = 0.0


class Topology:
    """The ``topologyVersion`` of this primary; bumped by (simulated) state changes."""

    def __init__(self) -> None:
        self.process_id = ObjectId()
        self.counter = 0
        self._changed = asyncio.Event()

    def version(self) -> dict[str, Any]:
        return {"processId": self.process_id, "counter": Int64(self.counter)}

    def is_current(self, version: Any) -> bool:
        return (
            isinstance(version, dict)
            and version.get("processId") == self.process_id
            and version.get("counter") == self.counter
        )

    def changed(self) -> asyncio.Event:
        return self._changed

    def bump(self) -> None:
        self.counter += 1
        self._changed.set()
        self._changed = asyncio.Event()


class State:
    """Everything a command handler may read or change."""

    def __init__(self, config: DoubleConfig) -> None:
        self.config = config
        self.store = Store()
        self.cursors = Cursors()
        self.faults = Faults()
        self.topology = Topology()
        self.retried_writes: dict[Hashable, tuple[int, dict[str, Any]]] = {}
        self.connections: dict[int, Connection] = {}
        self.next_connection_id = 1
        self.hangup: Callable[[Connection | None], int] = lambda _conn: 0


@dataclass(slots=True)
class Context:
    """One command being executed."""

    state: State
    conn: Connection | None
    db: str
    name: str
    command: dict[str, Any]

    @property
    def store(self) -> Store:
        return self.state.store

    def arg(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        """A typed command argument (TypeMismatch when of the wrong type)."""
        if key not in self.command:
            if default is ...:
                raise CommandError(
                    40414, f"BSON field '{self.name}.{key}' is missing but a required field"
                )
            return default
        value = self.command[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
            raise CommandError(
                14, f"BSON field '{self.name}.{key}' is the wrong type '{type(value).__name__}'"
            )
        return value

    def number(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        """An integral argument; BadValue if below ``minimum``."""
        value = self.arg(key, (int, float), default)
        if value is None:
            return None
        if int(value) < minimum:
            raise CommandError(
                51024, f"BSON field '{key}' value must be >= {minimum}, actual value '{value}'"
            )
        return int(value)

    def collection_name(self) -> str:
        """The collection named by the command's first field (InvalidNamespace if bad)."""
        name = self.command[self.name]
        if not isinstance(name, str) or not name or "\x00" in name or name.startswith("$"):
            raise CommandError(73, f"Invalid namespace specified '{self.db}.{name}'")
        return name


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


Handler = Callable[[Context], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}


def command(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under one or more command names."""

    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = handler
        return handler

    return register


def validate_db(db: Any) -> str:
    if not isinstance(db, str) or not db or any(c in db for c in '/\\. "$\x00'):
        raise bad_value(f"Invalid database name: '{db}'")
    return db
