"""Small in-memory stand-ins for the watcher's ports (lease, token store, channel, source).

``FakeRedis`` is one shared state behind :class:`FakeLease`, :class:`FakeTokens` and
:class:`FakeChannel`, fenced exactly like the Lua scripts (leader id *and* epoch must
match, and an expired lease matches nobody). :class:`FakeSource` is a change stream over
a list of events whose resume tokens are ``{"_data": "<next index>"}``, so tests can compare
positions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bson.timestamp import Timestamp

from shared.batches import decode_batch
from shared.errors import StoreUnavailable
from shared.messages import Message, splice_seq
from watcher.errors import CorruptToken, FencedOut, HistoryLost
from watcher.resuming import ResumeToken, StoredToken, dump_token, parse_token


@dataclass
class FakeRedis:
    """Lease, epoch, seq, published messages and the token hash of one fake Redis."""

    leader: str | None = None
    expires_at: float = 0.0
    epoch: int = 0
    seq: int = 0
    published: list[bytes] = field(default_factory=list)
    token: dict[str, str] | None = None
    down: bool = False
    hang: bool = False

    def holder(self) -> str | None:
        """The current lease holder, None once expired."""
        if self.leader is not None and time.monotonic() >= self.expires_at:
            self.leader = None
        return self.leader

    def fenced(self, instance_id: str, epoch: int) -> bool:
        """What the scripts' fence says: True when ``instance_id``/``epoch`` are not current."""
        return self.holder() != instance_id or self.epoch != epoch

    async def call(self) -> None:
        """Every command passes here: fail when down, never return when hung."""
        if self.down:
            raise StoreUnavailable("fake redis is down")
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    def messages(self) -> list[Message]:
        """Every published change, decoded (a batch message gives each of its changes)."""
        return [m for raw in self.published for m in decode_batch(raw).changes]


class FakeLease:
    """:class:`watcher.electing.Lease` on :class:`FakeRedis`."""

    def __init__(self, redis: FakeRedis, instance_id: str) -> None:
        self.redis, self.id = redis, instance_id
        self.renewals = 0
        self.hang_renew = False

    async def acquire(self, ttl_ms: int) -> int:
        await self.redis.call()
        if self.redis.holder() is not None:
            return 0
        self.redis.leader, self.redis.expires_at = self.id, time.monotonic() + ttl_ms / 1000
        self.redis.epoch += 1
        return self.redis.epoch

    async def renew(self, epoch: int, ttl_ms: int) -> bool:
        await self.redis.call()
        if self.hang_renew:
            await asyncio.Event().wait()
        if self.redis.fenced(self.id, epoch):
            return False
        self.renewals += 1
        self.redis.expires_at = time.monotonic() + ttl_ms / 1000
        return True

    async def release(self, epoch: int) -> bool:
        await self.redis.call()
        if self.redis.fenced(self.id, epoch):
            return False
        self.redis.leader = None
        return True

    async def remaining_ms(self) -> int | None:
        await self.redis.call()
        if self.redis.holder() is None:
            return None
        return int((self.redis.expires_at - time.monotonic()) * 1000)


class FakeTokens:
    """:class:`watcher.resuming.TokenStore` on :class:`FakeRedis`; records every save."""

    def __init__(self, redis: FakeRedis, instance_id: str) -> None:
        self.redis, self.id = redis, instance_id
        self.saves: list[dict[str, Any]] = []

    async def load(self) -> StoredToken | None:
        await self.redis.call()
        raw = self.redis.token
        if raw is None:
            return None
        if not raw.get("token"):
            raise CorruptToken("no token field")
        return StoredToken(
            token=parse_token(raw["token"]),
            epoch=int(raw["epoch"]) if raw.get("epoch") else None,
            cluster_time=None,
            saved_at=None,
            saved_by=raw.get("saved_by", ""),
        )

    async def save(
        self, token: ResumeToken, *, epoch: int, cluster_time: float | None, saved_at: float
    ) -> None:
        await self.redis.call()
        if self.redis.fenced(self.id, epoch):
            raise FencedOut("fake fence")
        self.redis.token = {"token": dump_token(token), "epoch": str(epoch), "saved_by": self.id}
        self.saves.append(dict(token))

    def set(self, token: Mapping[str, Any]) -> None:
        """Store ``token`` directly, as a previous leader would have."""
        self.redis.token = {"token": dump_token(token), "epoch": "0", "saved_by": "earlier"}


class FakeChannel:
    """:class:`watcher.publishing.Channel` on :class:`FakeRedis`."""

    def __init__(self, redis: FakeRedis, instance_id: str) -> None:
        self.redis, self.id = redis, instance_id

    async def publish(
        self,
        body: bytes,
        *,
        epoch: int,
        incr: bool,
        term_id: str = "",
        floor: int = 0,
        count: int = 1,
    ) -> int:
        await self.redis.call()
        if self.redis.fenced(self.id, epoch):
            raise FencedOut("fake fence")
        self.redis.seq = max(self.redis.seq, floor)
        first = self.redis.seq + 1 if incr else self.redis.seq
        if incr:
            self.redis.seq += count
        self.redis.published.append(splice_seq(body, first))
        return first


def token(position: int) -> dict[str, str]:
    """The fake resume token meaning "the next event to read is ``position``"."""
    return {"_data": f"{position:08d}"}


def position(tok: Mapping[str, Any] | None) -> int:
    """Inverse of :func:`token`."""
    assert tok is not None
    return int(tok["_data"])


class FakeStream:
    """One open stream of :class:`FakeSource`."""

    def __init__(self, source: FakeSource, pos: int) -> None:
        self.source, self.pos = source, pos
        self.resume_token: dict[str, str] | None = token(pos)
        self.closed = False

    async def try_next(self) -> Mapping[str, Any] | None:
        source = self.source
        if source.next_errors:
            raise source.next_errors.pop(0)
        if self.pos < len(source.events):
            change = source.events[self.pos]
            self.pos += 1
            self.resume_token = token(self.pos)
            return change
        source.empty_batches += 1
        await asyncio.sleep(source.await_s)
        self.resume_token = token(self.pos)
        return None

    def buffered(self) -> bool:
        """Every event already recorded counts as part of the current server reply."""
        return self.source.batching and self.pos < len(self.source.events)

    async def close(self) -> None:
        self.closed = True


class FakeSource:
    """A collection with a change history; ``forget_before`` simulates a rolled-over oplog."""

    def __init__(self, *, key_field: str = "source_id", await_s: float = 0.005) -> None:
        self.key_field = key_field
        self.await_s = await_s
        self.events: list[dict[str, Any]] = []
        self.docs: dict[Any, dict[str, Any]] = {}
        self.first_available = 0
        self.open_errors: list[Exception] = []
        self.next_errors: list[Exception] = []
        self.opened: list[int] = []
        self.empty_batches = 0
        #: Whether recorded events are handed out as one batch (``FakeStream.buffered``).
        self.batching = True

    def _event(self, op: str, **extra: Any) -> dict[str, Any]:
        n = len(self.events)
        change = {
            "_id": token(n + 1),
            "operationType": op,
            "clusterTime": Timestamp(1_700_000_000 + n, 1),
            **extra,
        }
        self.events.append(change)
        return change

    def insert(self, doc_id: Any, key: str, **fields: Any) -> dict[str, Any]:
        """Insert (or replace) a document and record its event."""
        doc = {"_id": doc_id, self.key_field: key, **fields}
        op = "replace" if doc_id in self.docs else "insert"
        self.docs[doc_id] = doc
        return self._event(op, documentKey={"_id": doc_id}, fullDocument=dict(doc))

    def update(self, doc_id: Any, **fields: Any) -> dict[str, Any]:
        """Update fields of a document (post-image looked up now)."""
        self.docs[doc_id].update(fields)
        return self._event(
            "update", documentKey={"_id": doc_id}, fullDocument=dict(self.docs[doc_id])
        )

    def delete(self, doc_id: Any) -> dict[str, Any]:
        """Delete a document."""
        self.docs.pop(doc_id, None)
        return self._event("delete", documentKey={"_id": doc_id})

    def drop(self) -> None:
        """Drop the collection: ``drop`` then ``invalidate``."""
        self.docs.clear()
        self._event("drop")
        self._event("invalidate")

    def forget_before(self, pos: int) -> None:
        """History before ``pos`` is gone: resuming from an older token fails (286)."""
        self.first_available = pos

    async def open(self, start_after: ResumeToken | None) -> FakeStream:
        await asyncio.sleep(0)
        if self.open_errors:
            raise self.open_errors.pop(0)
        pos = len(self.events) if start_after is None else position(start_after)
        if pos < self.first_available:
            raise HistoryLost("history_lost", "code 286: resume point no longer in the oplog")
        self.opened.append(pos)
        return FakeStream(self, pos)

    async def scan_keys(self, key_field: str) -> AsyncIterator[tuple[Any, Any]]:
        for doc_id, doc in list(self.docs.items()):
            await asyncio.sleep(0)
            yield doc_id, {"_id": doc_id, key_field: doc.get(key_field)}
