"""Where routed blob events go, and the counts of what ``POST /events/blob`` did.

Why a module of its own: the HTTP layer (:mod:`service.ingesting`) decides, this module
records. :class:`RedisEventSink` stores each event in one of two capped Redis streams
(``{ns}:events:accepted`` / ``{ns}:events:dlq``) through one script
(:mod:`service.event_store_script`) that also remembers the event's id for a window, so
a retried request does not store an event twice; a write that fails raises
:class:`~service.errors.EventSinkUnavailable`, so the request is answered 503 and the
sender retries -- an event is never acknowledged before it was written (and, with
``min_replicas``, before that many Redis replicas confirmed it with ``WAIT``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast, runtime_checkable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

from service.errors import EventSinkUnavailable
from service.event_counters import (
    OUTCOMES,
    REJECTION_REASONS,
    STREAMS,
    IngestCounters,
    TrimCounters,
)
from service.event_store_script import STORE_EVENTS
from shared.clients import REDIS_DOWN_ERRORS
from shared.cluster import wait_target
from shared.keys import Keys

__all__ = [
    "MAX_PER_CALL",
    "OUTCOMES",
    "REJECTION_REASONS",
    "STREAMS",
    "BatchEventSink",
    "EventSink",
    "IngestCounters",
    "NotReplicated",
    "RedisEventSink",
    "SinkEntry",
    "StreamLimits",
    "TrimCounters",
    "store_each",
]

#: Entries stored by one script call at most (a larger batch is several calls, one pipeline).
MAX_PER_CALL: Final = 500
#: Writes (pipelined script calls) out at once; later ones collect and wait for a slot.
MAX_IN_FLIGHT: Final = 2


class EventSink(Protocol):
    """Where routed events go; both methods raise :class:`EventSinkUnavailable` on failure.

    ``event`` is a flat record: ``event_id``, ``event_type``, ``subject``, ``container``,
    ``path``, ``received_at`` (epoch seconds), ``event`` (the event as received, JSON
    bytes), and for dead letters ``source_id`` / ``candidates`` when known. ``dedup_key``
    names the event for de-duplication (empty: none) and ``answer`` is what to tell a
    retry of it. Each returns None when the event was stored now, or the ``answer``
    stored by the first delivery of the same event within the window.
    """

    async def accepted(
        self, source_id: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        """Hand the event on to the ingestion of ``source_id``."""
        ...

    async def dead_letter(
        self, reason: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        """Park the event with the reason nobody took it."""
        ...


@dataclass(frozen=True, slots=True)
class SinkEntry:
    """One event to store: ``stream`` ``accepted`` (``tag`` its source_id) or ``dlq``
    (``tag`` the reason), with the record, de-duplication key and answer of
    :meth:`EventSink.accepted` / :meth:`EventSink.dead_letter`."""

    stream: str
    tag: str
    record: dict[str, Any]
    dedup_key: str = ""
    answer: bytes = b""


@runtime_checkable
class BatchEventSink(EventSink, Protocol):
    """An :class:`EventSink` that also stores many events in one call (one round trip)."""

    async def store_many(self, entries: Sequence[SinkEntry]) -> list[bytes | None | Exception]:
        """Per entry, in order: None (stored now), the earlier answer, or the
        :class:`EventSinkUnavailable` that entry failed with."""
        ...


async def store_each(
    sink: EventSink, entries: Sequence[SinkEntry]
) -> list[bytes | None | Exception]:
    """:meth:`BatchEventSink.store_many` over any sink: a batch sink's own, else one call
    per entry (concurrently); per-entry :class:`EventSinkUnavailable` are returned."""
    store_many = getattr(sink, "store_many", None)  # isinstance(, BatchEventSink) is slow
    if store_many is not None:
        return cast(list[bytes | None | Exception], await store_many(entries))

    async def one(e: SinkEntry) -> bytes | None:
        if e.stream == "accepted":
            return await sink.accepted(e.tag, e.record, dedup_key=e.dedup_key, answer=e.answer)
        return await sink.dead_letter(e.tag, e.record, dedup_key=e.dedup_key, answer=e.answer)

    outcomes = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, EventSinkUnavailable):
            raise outcome
    return cast(list[bytes | None | Exception], outcomes)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How the two events streams are capped, and how a write is confirmed.

    ``maxlen`` entries, none older than ``max_age_s`` (0: no age cap), about ``max_bytes``
    of Redis memory (0: no byte cap); ``consumer_group`` names the group whose unread
    entries trimming must count; ``dedup_window_s`` is how long an event id is
    remembered (0: not at all); ``min_replicas`` Redis replicas must confirm each batch
    within ``replica_timeout_ms`` (``WAIT``; 0: no wait).
    """

    maxlen: int = 100_000
    max_age_s: float = 0.0
    max_bytes: int = 0
    consumer_group: str | None = None
    dedup_window_s: float = 0.0
    min_replicas: int = 0
    replica_timeout_ms: int = 1000

    def __post_init__(self) -> None:
        if self.maxlen < 1:
            raise ValueError(f"maxlen must be positive, got {self.maxlen}")


class RedisEventSink:
    """:class:`EventSink` over two capped Redis streams (one script call per batch).

    Writes are group-committed: every write requested in the same event-loop tick (the
    events of one request chunk, and those of concurrent requests), or while
    :data:`MAX_IN_FLIGHT` writes are already out, goes out in one script call
    (:data:`MAX_PER_CALL` entries each, one pipelined round trip) -- followed by
    ``WAIT`` when ``min_replicas`` is set -- and each caller still learns the fate of its
    own entry: its call returns only once Redis stored it, or raises
    :class:`EventSinkUnavailable`. If the writing task is cancelled, every entry still
    waiting fails rather than hanging. Concurrent writes are independent: de-duplication
    holds across them (each script call is atomic on Redis), and ``WAIT`` covers the
    connection that wrote.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        maxlen: int = 100_000,
        limits: StreamLimits | None = None,
        trims: TrimCounters | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._limits = limits if limits is not None else StreamLimits(maxlen=maxlen)
        self.trims = trims if trims is not None else TrimCounters()
        self._window_ms = int(self._limits.dedup_window_s * 1000)
        self._sha = hashlib.sha1(STORE_EVENTS.encode()).hexdigest()
        self._pending: list[_Entry] = []
        self._collecting = False
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._loaded = False

    async def accepted(
        self, source_id: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        """Store in ``{ns}:events:accepted`` with ``source_id`` first, then the record."""
        record = {"source_id": source_id, **event}
        return await self._add("accepted", record, dedup_key, answer)

    async def dead_letter(
        self, reason: str, event: dict[str, Any], *, dedup_key: str = "", answer: bytes = b""
    ) -> bytes | None:
        """Store in ``{ns}:events:dlq`` with ``reason`` first, then the record."""
        return await self._add("dlq", {"reason": reason, **event}, dedup_key, answer)

    async def store_many(self, entries: Sequence[SinkEntry]) -> list[bytes | None | Exception]:
        """Every entry in the same group commit (see :class:`BatchEventSink`)."""
        done = []
        for e in entries:
            tag = "source_id" if e.stream == "accepted" else "reason"
            done.append(self._enqueue(e.stream, {tag: e.tag, **e.record}, e.dedup_key, e.answer))
        if not self._collecting:
            await self._flush()
        out: list[bytes | None | Exception] = []
        for future in done:
            try:
                out.append(await future)
            except EventSinkUnavailable as error:
                out.append(error)
        return out

    async def _add(
        self, stream: str, record: dict[str, Any], dedup_key: str, answer: bytes
    ) -> bytes | None:
        done = self._enqueue(stream, record, dedup_key, answer)
        if not self._collecting:
            await self._flush()
        return await done

    def _enqueue(
        self, stream: str, record: dict[str, Any], dedup_key: str, answer: bytes
    ) -> asyncio.Future[bytes | None]:
        fields: list[str] = []
        for name, value in record.items():
            fields.append(name)
            plain = value.__class__ is str and name != "event"
            fields.append(value if plain else _field(name, value))
        seen = _digest(dedup_key) if dedup_key and self._window_ms > 0 else ""
        done: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(stream, seen, answer, fields, done))
        return done

    async def _flush(self) -> None:
        """Collect what is pending into one write and send it.

        Whoever finds no collector becomes it: it lets the writers of this tick join, then
        waits for one of :data:`MAX_IN_FLIGHT` slots (everyone arriving meanwhile joins
        too), takes the batch and writes it -- one batch, then it returns to its own
        request. Writes arriving while it is out start the next collector, so Redis
        always has the next call queued behind the one it runs. A collector cancelled
        before it took the batch fails what is pending (no one else would send it).
        """
        self._collecting = True
        batch: list[_Entry] | None = None
        try:
            await asyncio.sleep(0)
            async with self._slots:
                batch, self._pending = self._pending, []
                self._collecting = False
                await self._write(batch)
                batch = []
        finally:
            if batch is None:  # cancelled while collecting: this collector's batch
                self._collecting = False
                batch, self._pending = self._pending, []
            _fail(batch, EventSinkUnavailable("events writer cancelled; retry"))

    async def _write(self, batch: list[_Entry]) -> None:
        calls = [batch[i : i + MAX_PER_CALL] for i in range(0, len(batch), MAX_PER_CALL)]
        try:
            if not self._loaded:
                await self._redis.script_load(STORE_EVENTS)
                self._loaded = True
            results = await self._send(calls)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # Redis restarted or failed over: load the script, send those again
                await self._redis.script_load(STORE_EVENTS)
                again = await self._send([calls[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except NotReplicated as e:
            _fail(batch, e)
            return
        except REDIS_DOWN_ERRORS as e:
            _fail(batch, EventSinkUnavailable(f"storing {len(batch)} event(s) failed: {e}"))
            return
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, Exception):
                _fail(call, EventSinkUnavailable(f"storing {len(call)} event(s) failed: {result}"))
                continue
            self._settle(call, result)

    def _settle(self, call: list[_Entry], result: list[Any]) -> None:
        """Count what trimming did, then tell each entry's caller its fate."""
        replies, streams = result
        for s, name in enumerate(STREAMS):
            removed, unread, length = streams[3 * s : 3 * s + 3]
            self.trims.removed[name] += int(removed)
            self.trims.removed_unread[name] += int(unread)
            if int(length) >= 0:
                self.trims.length[name] = int(length)
        for k, entry in enumerate(call):
            if entry.done.done():
                continue
            status, value = int(replies[2 * k]), replies[2 * k + 1]
            if status < 0:
                error = EventSinkUnavailable(f"storing in {entry.stream} failed: {value!r}")
                entry.done.set_exception(error)
            else:
                entry.done.set_result(None if status else bytes(value))

    async def _send(self, calls: list[list[_Entry]]) -> list[Any]:
        """One pipelined round trip: the script once per call, then ``WAIT`` if asked."""
        wait = self._limits.min_replicas
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                keys, args = self._script_call(call)
                # As a raw command: redis-py's cluster pipeline blocks its evalsha() helper
                # but routes EVALSHA by its keys (one {ns} slot) like any keyed command.
                pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
            if wait:
                where = wait_target(self._redis, self._keys.events_accepted)  # cluster: {ns} owner
                pipe.execute_command("WAIT", wait, self._limits.replica_timeout_ms, **where)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        if wait:
            confirmed = results.pop()
            if isinstance(confirmed, Exception) or int(confirmed) < wait:
                raise NotReplicated(
                    f"{sum(map(len, calls))} event(s) stored but confirmed by {confirmed} of "
                    f"{wait} Redis replicas within {self._limits.replica_timeout_ms} ms; retry"
                )
        return results

    def _script_call(self, call: list[_Entry]) -> tuple[list[str], list[EncodableT]]:
        """``KEYS`` and ``ARGV`` of one :data:`STORE_EVENTS` call (see its docstring)."""
        limits = self._limits
        keys = [self._keys.events_accepted, self._keys.events_dlq]
        seen_at: dict[str, int] = {}
        entries: list[tuple[int, int, str, list[str]]] = []
        for entry in call:
            seen = 0
            if entry.seen:
                seen = seen_at.get(entry.seen, 0)
                if not seen:
                    keys.append(self._keys.event_seen(entry.seen))
                    seen = seen_at[entry.seen] = len(keys)
            stream = 1 if entry.stream == "accepted" else 2
            entries.append((stream, seen, entry.answer.decode(), entry.fields))
        args: list[EncodableT] = [
            self._window_ms,
            limits.maxlen,
            int(limits.max_age_s * 1000),
            limits.max_bytes,
            limits.consumer_group or "",
            orjson.dumps(entries),
        ]
        return keys, args


class NotReplicated(EventSinkUnavailable):
    """Stored, but fewer Redis replicas than ``min_replicas`` confirmed it in time (503)."""


def _digest(dedup_key: str) -> str:
    return hashlib.blake2b(dedup_key.encode(), digest_size=16).hexdigest()


def _field(name: str, value: Any) -> str:
    if name == "event":
        return (value if isinstance(value, bytes) else orjson.dumps(value)).decode()
    return str(value)


@dataclass(slots=True)
class _Entry:
    stream: str
    seen: str  # digest of the de-duplication key; empty: not de-duplicated
    answer: bytes
    fields: list[str]
    done: asyncio.Future[bytes | None]


def _fail(entries: list[_Entry], error: EventSinkUnavailable) -> None:
    for entry in entries:
        if not entry.done.done():
            entry.done.set_exception(error)
