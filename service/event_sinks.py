"""Where routed blob events go, and the counts of what ``POST /events/blob`` did.

Why a module of its own: the HTTP layer (:mod:`service.ingesting`) decides, this module
records. :class:`RedisEventSink` writes each event to one of two capped Redis streams
(``{ns}:events:accepted`` / ``{ns}:events:dlq``); a write that fails raises
:class:`~service.errors.EventSinkUnavailable`, so the request is answered 503 and the
sender retries -- an event is never acknowledged before it was written.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from service.errors import EventSinkUnavailable
from service.event_schemas import DEAD_LETTER_REASONS
from shared.clients import REDIS_DOWN_ERRORS
from shared.keys import Keys

OUTCOMES: Final = ("accepted", "dead_lettered", "validation")
REJECTION_REASONS: Final = (
    "unauthorized",
    "too_large",
    "incomplete_body",
    "bad_json",
    "bad_schema",
    "unavailable",
)


class EventSink(Protocol):
    """Where routed events go; both methods raise :class:`EventSinkUnavailable` on failure.

    ``event`` is a flat record: ``event_id``, ``event_type``, ``subject``, ``container``,
    ``path``, ``received_at`` (epoch seconds), ``event`` (the event as received), and for
    dead letters ``source_id`` / ``candidates`` when known.
    """

    async def accepted(self, source_id: str, event: dict[str, Any]) -> None:
        """Hand the event on to the ingestion of ``source_id``."""
        ...

    async def dead_letter(self, reason: str, event: dict[str, Any]) -> None:
        """Park the event with the reason nobody took it."""
        ...


class RedisEventSink:
    """:class:`EventSink` over two capped Redis streams (``XADD ... MAXLEN ~ maxlen``).

    Writes are group-committed: every ``XADD`` requested in the same event-loop tick (the
    events of one request, and those of concurrent requests) goes out in one pipelined
    round trip, and each caller still learns the fate of its own entry -- its call returns
    only once Redis stored it, or raises :class:`EventSinkUnavailable`. If the writing task
    is cancelled, every entry still waiting fails rather than hanging.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, maxlen: int = 100_000) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be positive, got {maxlen}")
        self._redis = redis
        self._keys = keys
        self._maxlen = maxlen
        self._pending: list[_Entry] = []
        self._flushing = False

    async def accepted(self, source_id: str, event: dict[str, Any]) -> None:
        """``XADD {ns}:events:accepted`` with ``source_id`` first, then the record."""
        await self._add(self._keys.events_accepted, {"source_id": source_id, **event})

    async def dead_letter(self, reason: str, event: dict[str, Any]) -> None:
        """``XADD {ns}:events:dlq`` with ``reason`` first, then the record."""
        await self._add(self._keys.events_dlq, {"reason": reason, **event})

    async def _add(self, stream: str, record: dict[str, Any]) -> None:
        fields: dict[FieldT, EncodableT] = {
            name: orjson.dumps(value) if name == "event" else str(value)
            for name, value in record.items()
        }
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(stream, fields, done))
        if not self._flushing:
            await self._flush_pending()
        await done

    async def _flush_pending(self) -> None:
        self._flushing = True
        batch: list[_Entry] = []
        try:
            await asyncio.sleep(0)  # let the writers of this tick join the batch
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
                batch = []
        finally:
            self._flushing = False
            stranded, self._pending = [*batch, *self._pending], []
            _fail(stranded, EventSinkUnavailable("events writer cancelled; retry"))

    async def _write(self, batch: list[_Entry]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.xadd(entry.stream, entry.fields, maxlen=self._maxlen, approximate=True)
                results = await pipe.execute(raise_on_error=False)
        except REDIS_DOWN_ERRORS as e:
            _fail(batch, EventSinkUnavailable(f"XADD of {len(batch)} event(s) failed: {e}"))
            return
        for entry, result in zip(batch, results, strict=True):
            if entry.done.done():
                continue
            if isinstance(result, Exception):
                error = EventSinkUnavailable(f"XADD {entry.stream} failed: {result}")
                entry.done.set_exception(error)
            else:
                entry.done.set_result(None)


@dataclass(slots=True)
class _Entry:
    stream: str
    fields: dict[FieldT, EncodableT]
    done: asyncio.Future[None]


def _fail(entries: list[_Entry], error: EventSinkUnavailable) -> None:
    for entry in entries:
        if not entry.done.done():
            entry.done.set_exception(error)


class IngestCounters:
    """Plain-integer counts of what ``POST /events/blob`` did, read by metric callbacks.

    The label sets are fixed at construction (so a callback iterating them on another
    thread never sees a dict change size): ``outcomes`` per event (``accepted``,
    ``dead_lettered``, ``validation``), ``rejections`` per refused request,
    ``dead_letters`` per dead-letter reason.
    """

    __slots__ = ("dead_letters", "outcomes", "rejections")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.rejections: dict[str, int] = dict.fromkeys(REJECTION_REASONS, 0)
        self.dead_letters: dict[str, int] = dict.fromkeys(DEAD_LETTER_REASONS, 0)

    def events_by_outcome(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"outcome": o})]`` for ``scc_events_total``."""
        return [(n, {"outcome": k}) for k, n in list(self.outcomes.items())]

    def rejections_by_reason(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"reason": r})]`` for ``scc_events_rejected_total``."""
        return [(n, {"reason": k}) for k, n in list(self.rejections.items())]

    def dead_letters_by_reason(self) -> list[tuple[float, dict[str, str]]]:
        """``[(count, {"reason": r})]`` for ``scc_events_dead_lettered_total``."""
        return [(n, {"reason": k}) for k, n in list(self.dead_letters.items())]
