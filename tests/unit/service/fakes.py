"""Small in-memory fakes behind the service's ports (ConfigStore, Feed) and a fake clock."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable
from typing import Any

from service.errors import FeedLost, StoreError
from service.feed import SUBSCRIBED
from shared.messages import Message, encode


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config(key: str, container: str | None = None, **fields: Any) -> dict[str, Any]:
    """A source config document."""
    doc: dict[str, Any] = {"source_id": key, **fields}
    if container is not None:
        doc["ingestion"] = {"landing_container": container}
    return doc


class FakeStore:
    """A ConfigStore over a dict; reads can be held at a gate and can fail on demand."""

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.docs: dict[str, dict[str, Any]] = {d["source_id"]: d for d in docs or []}
        self.loads = 0
        self.key_reads: list[str] = []
        self.container_reads: list[str] = []
        self.gate: asyncio.Event | None = None  # when set, reads wait for it
        self.entered = asyncio.Event()  # set when a read reached the gate
        self.fail: StoreError | None = None
        self.on_load: Callable[[], None] | None = None
        #: What :meth:`read_time` answers (a reload's floor); None: no cluster time.
        self.time: tuple[int, int] | None = None

    def put(self, doc: dict[str, Any]) -> None:
        self.docs[doc["source_id"]] = doc

    async def _pass(self) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail

    async def load_all(self) -> list[dict[str, Any]]:
        self.loads += 1
        snapshot = [copy.deepcopy(d) for d in self.docs.values()]
        if self.on_load is not None:
            self.on_load()
        await self._pass()
        return snapshot

    async def find_by_key(self, key: str) -> dict[str, Any] | None:
        self.key_reads.append(key)
        found = copy.deepcopy(self.docs.get(key))
        await self._pass()
        return found

    async def read_time(self) -> tuple[int, int] | None:
        return self.time

    async def find_by_container(self, container: str) -> list[dict[str, Any]]:
        self.container_reads.append(container)
        found = [
            copy.deepcopy(d)
            for d in self.docs.values()
            if d.get("ingestion", {}).get("landing_container") == container
        ]
        await self._pass()
        return found


class ScriptedFeed:
    """A Feed playing a script; when the script runs dry, time passes (fake clock) silently.

    ``receive`` returns the next scripted item at once; with nothing left it advances the
    clock by the wait it was given and returns None, so silence costs no real time.
    """

    def __init__(
        self, clock: FakeClock, *, seq: int = 0, epoch: int | None = None, term: str | None = ""
    ) -> None:
        self.clock = clock
        self.items: deque[bytes | str | FeedLost] = deque()
        self.seq = seq
        self.epoch = epoch
        self.term = term
        self.later: deque[bytes | str | FeedLost] = deque()
        self.opens = 0
        self.closes = 0
        self.open_failures: deque[FeedLost] = deque()
        self.marks = 0

    def push(self, *items: bytes | str | FeedLost) -> None:
        self.items.extend(items)

    def push_later(self, *items: Message | bytes | str | FeedLost) -> None:
        """Items held back until the first waiting receive (after the start-up load)."""
        self.later.extend(encode(i) if isinstance(i, Message) else i for i in items)

    def push_messages(self, *messages: Message, hmac_key: bytes | None = None) -> None:
        self.items.extend(encode(m, hmac_key=hmac_key) for m in messages)

    async def open(self) -> None:
        self.opens += 1
        if self.open_failures:
            raise self.open_failures.popleft()

    async def receive(self, wait_s: float) -> bytes | str | None:
        await asyncio.sleep(0)
        if wait_s > 0 and self.later:
            self.items.extend(self.later)
            self.later.clear()
        if self.items:
            item = self.items.popleft()
            if isinstance(item, FeedLost):
                raise item
            return item
        self.clock.advance(wait_s)
        return None

    async def position(self) -> tuple[int, int | None, str | None]:
        return self.seq, self.epoch, self.term

    async def mark(self) -> None:
        self.marks += 1

    async def close(self) -> None:
        self.closes += 1


def upsert(
    seq: int,
    key: str,
    epoch: int = 1,
    *,
    term: str = "",
    ct: tuple[int, int] | None = None,
    doc_id: Any = None,
    **fields: Any,
) -> Message:
    """An upsert message carrying the post-image ``config(key, **fields)``."""
    container = fields.pop("container", None)
    doc = config(key, container, **fields)
    if doc_id is not None:
        doc["_id"] = doc_id
    return Message(
        kind="upsert", seq=seq, epoch=epoch, key=key, doc=doc, term=term, ct=ct, doc_id=doc_id
    )


def delete(
    seq: int,
    key: str,
    epoch: int = 1,
    *,
    term: str = "",
    ct: tuple[int, int] | None = None,
    doc_id: Any = None,
) -> Message:
    """A delete message."""
    return Message(kind="delete", seq=seq, epoch=epoch, key=key, term=term, ct=ct, doc_id=doc_id)


def heartbeat(seq: int, epoch: int = 1, *, term: str = "") -> Message:
    """A heartbeat carrying the current seq."""
    return Message(kind="heartbeat", seq=seq, epoch=epoch, term=term)


def resync(seq: int, epoch: int = 1, *, term: str = "") -> Message:
    """A broadcast resync."""
    return Message(kind="resync", seq=seq, epoch=epoch, reason="history_lost", term=term)


__all__ = [
    "SUBSCRIBED",
    "FakeClock",
    "FakeStore",
    "ScriptedFeed",
    "config",
    "delete",
    "heartbeat",
    "resync",
    "upsert",
]
