"""Following the MongoDB change stream while leading, and publishing every change once or more.

Invariants (DESIGN.md, rule 1):

* **Publish, then save.** The position saved to ``{ns}:resume`` is ``stream.resume_token``
  read right after the change it covers was published (PyMongo moves that token only when
  ``try_next`` returns, so it never points past an unpublished change). Replays after a
  failover are harmless: messages carry current state.
* **Batches without waiting.** After a change arrives, the changes the stream already
  holds (the rest of the same server reply: :meth:`ChangeStream.buffered`) are taken with
  it, up to ``SCC_PUBLISH_BATCH_MAX_CHANGES``, and published together
  (:meth:`Publisher.send_batch`); the token kept is the one after the last of them. A
  lone change (a quiet collection) is published the moment it arrives.
* **Never silently from "now".** A stream opened without a token is always followed by a
  ``resync`` (reason ``no_token``, ``corrupt_token``, ``history_lost``, ``drop``, ...)
  published *after* the stream is open, then the new token is saved at once.
* **Never a dead token forever.** A token the server refuses is dropped after one try.
* **Transient errors** (network, step-down, Redis hiccups) reopen the stream from the last
  published position with exponential backoff + full jitter, logged and counted.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import structlog
from bson.timestamp import Timestamp

from shared.documents import key_of
from shared.errors import StoreUnavailable
from watcher.electing import Leadership, Term
from watcher.errors import (
    CorruptToken,
    NotLeader,
    SourceUnavailable,
    StreamInvalidated,
    StreamRestart,
)
from watcher.publishing import Publisher
from watcher.reporting import WatcherStats
from watcher.resuming import ResumeToken, TokenStore
from watcher.timing import Backoff, Clock, wait_event
from watcher.translating import Draft, Translator, cluster_seconds, resync

log = structlog.get_logger("watcher.watching")

#: Events after which the stream cannot continue: publish ``resync`` and restart from now.
RESTART_OPS: Final = frozenset({"invalidate", "drop", "rename", "dropDatabase"})
#: Every operation type the change-stream pipeline lets through.
WATCHED_OPS: Final = ("insert", "update", "replace", "delete", *sorted(RESTART_OPS))


class ChangeStream(Protocol):
    """An open change stream (PyMongo's ``AsyncChangeStream`` behind an adapter)."""

    @property
    def resume_token(self) -> ResumeToken | None:
        """Token to resume after the last change returned (post-batch token when idle)."""
        ...

    async def try_next(self) -> Mapping[str, Any] | None:
        """The next change, or None after one empty ``getMore``.

        Raises :class:`HistoryLost` or :class:`SourceUnavailable`.
        """
        ...

    def buffered(self) -> bool:
        """Whether the next change is already held here (``try_next`` needs no round trip)."""
        ...

    async def close(self) -> None:
        """Kill the server cursor."""
        ...


class ChangeSource(Protocol):
    """The collection being followed."""

    async def open(self, start_after: ResumeToken | None) -> ChangeStream:
        """Open a stream after ``start_after`` (or from now). Raises like ``try_next``."""
        ...

    def scan_keys(self, key_field: str) -> AsyncIterator[tuple[Any, Any]]:
        """Every ``(_id, document)`` projected to ``{_id, key_field}``."""
        ...


@dataclass(slots=True)
class _Position:
    """Where this term has got to; ``token`` is None until the stream first reports one."""

    token: ResumeToken | None = None
    cluster_time: float | None = None
    saved: ResumeToken | None = None
    saved_at: float = float("-inf")
    unsaved_changes: int = 0
    loaded: bool = False
    scanned: bool = False
    resync_reason: str | None = None


class Follower:
    """Runs the change stream for one term at a time and publishes what it reads."""

    def __init__(
        self,
        *,
        source: ChangeSource,
        tokens: TokenStore,
        publisher: Publisher,
        translator: Translator,
        leadership: Leadership,
        stats: WatcherStats,
        clock: Clock,
        key_field: str,
        token_save_interval_ms: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._source = source
        self._tokens = tokens
        self._publisher = publisher
        self._translator = translator
        self._leadership = leadership
        self._stats = stats
        self._clock = clock
        self._key_field = key_field
        self._save_interval = token_save_interval_ms / 1000
        self._backoff = backoff or Backoff()
        #: Streams opened so far (all terms), for tests and logs.
        self.streams_opened = 0

    async def follow(self, term: Term, stop: asyncio.Event) -> None:
        """Follow until ``stop``; raises ``NotLeader``/``FencedOut`` when the term ends."""
        pos = _Position()
        bound = structlog.contextvars.bound_contextvars(epoch=term.epoch)
        with bound:
            try:
                await self._follow(term, stop, pos)
            finally:
                await self._final_save(term, pos)

    async def _follow(self, term: Term, stop: asyncio.Event, pos: _Position) -> None:
        while not stop.is_set():
            self._leadership.ensure(term)
            try:
                if not pos.loaded:
                    await self._load(pos)
                await self._stream(term, stop, pos)
                return
            except StreamRestart as e:
                log.warning("change stream must restart from now", reason=e.reason, detail=e.detail)
                pos.token, pos.resync_reason, pos.scanned = None, e.reason, False
            except (SourceUnavailable, StoreUnavailable) as e:
                self._stats.record_error("follow", e, at=self._clock.wall())
                log.warning(
                    "change stream interrupted; retrying", error=type(e).__name__, detail=str(e)
                )
                if pos.token is None and pos.resync_reason is None:
                    pos.loaded = False  # nothing published by this stream: reload the stored token
            await wait_event(stop, self._backoff.next_delay())

    async def _load(self, pos: _Position) -> None:
        try:
            stored = await self._tokens.load()
        except CorruptToken as e:
            log.error(
                "stored resume token is corrupt; publishing resync and starting from now",
                detail=str(e),
                hint="nothing to do: the token is rewritten once the new stream is open",
            )
            pos.token, pos.resync_reason = None, "corrupt_token"
        else:
            if stored is None:
                log.warning("no stored resume token; publishing resync and starting from now")
                pos.token, pos.resync_reason = None, "no_token"
            else:
                log.info(
                    "resuming from stored token",
                    saved_by=stored.saved_by,
                    token_epoch=stored.epoch,
                    cluster_time=stored.cluster_time,
                )
                pos.token, pos.saved, pos.resync_reason = stored.token, stored.token, None
        pos.loaded = True

    async def _stream(self, term: Term, stop: asyncio.Event, pos: _Position) -> None:
        stream = await self._source.open(pos.token)
        self.streams_opened += 1
        self._stats.stream_open = True
        self._stats.last_empty_batch_at = self._clock.wall()  # the server answered the open
        stopped = asyncio.create_task(stop.wait(), name="watcher.stream-stop")
        try:
            if pos.resync_reason is not None:
                # The stream is open first, so nothing after the replicas' reload is missed.
                await self._publisher.send(resync(pos.resync_reason), term)
                pos.resync_reason = None
                pos.token = stream.resume_token
                await self._save(term, pos, force=True)
            if not pos.scanned:
                await self._scan_keys()
                pos.scanned = True
            self._stats.caught_up_at = None  # a new stream: unknown until it answers
            while not stop.is_set():
                asked = self._clock.wall()
                got = await _next_unless_stopped(stream, stopped)
                if got is _STOPPED:
                    break  # a getMore left waiting: the next leader replays from the saved token
                change = cast("Mapping[str, Any] | None", got)
                self._backoff.reset()
                if change is None:
                    self._stats.last_empty_batch_at = self._clock.wall()
                    self._stats.caught_up(asked)  # nothing committed before we asked is left
                    if stream.resume_token is not None:
                        pos.token = stream.resume_token
                    await self._save(term, pos, force=pos.unsaved_changes > 0 or pos.saved is None)
                    continue
                self._stats.last_event_at = self._clock.wall()
                changes = await self._drain(stream, change)
                await self._handle(changes, term)
                self._published(changes, stream.resume_token, pos)
                await self._save(term, pos, force=False)
        finally:
            stopped.cancel()
            self._stats.stream_open = False
            await _close_quietly(stream)

    async def _drain(
        self, stream: ChangeStream, change: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        """``change`` and every change the stream already holds (the rest of the server's
        reply, up to the batch bound).

        Never waits for more: only changes that ``try_next`` returns without a round trip
        are taken, so a lone change goes out at once. The resume token is read once, after
        the batch is published (PyMongo deep-copies it on every read: per change, that
        copy cost more than the rest of the watcher's work on the change).
        """
        changes = [change]
        limit = self._publisher.batch_max_changes
        while len(changes) < limit and stream.buffered():
            more = await stream.try_next()
            if more is None:
                break
            changes.append(more)
        return changes

    def _published(
        self, changes: list[Mapping[str, Any]], token: ResumeToken | None, pos: _Position
    ) -> None:
        """Move the position to ``token``, just after the last of ``changes`` (published)."""
        last = changes[-1]
        self._stats.caught_up(event_wall_time(last))
        pos.token = token
        pos.cluster_time = cluster_seconds(last.get("clusterTime"))
        pos.unsaved_changes += len(changes)

    async def _handle(self, changes: list[Mapping[str, Any]], term: Term) -> None:
        """Publish the drafts of ``changes`` together. A restart event among them raises
        :class:`StreamInvalidated` once the changes before it are published (the position
        is left where it was: the stream restarts from now, after a resync)."""
        drafts: list[Draft] = []
        for change in changes:
            op = str(change.get("operationType"))
            if op in RESTART_OPS:
                await self._publisher.send_batch(drafts, term)
                raise StreamInvalidated(op, f"{op} event on the watched collection")
            drafts.extend(self._translator.drafts(change))
        await self._publisher.send_batch(drafts, term)

    async def _save(self, term: Term, pos: _Position, *, force: bool) -> None:
        """Save ``pos.token`` if it moved and (``force``, changes since, or interval passed).

        On an idle stream (no change since the last save) the post-batch token is saved at
        most every ``token_save_interval_ms``; after changes, when the batch ends (the next
        ``try_next`` comes back empty) or once the interval has passed during a long burst.
        """
        token = pos.token
        if token is None or token == pos.saved:
            return
        now = self._clock.monotonic()
        elapsed = now - pos.saved_at >= self._save_interval
        if not (force or elapsed):
            return
        self._leadership.ensure(term)
        await self._tokens.save(
            token, epoch=term.epoch, cluster_time=pos.cluster_time, saved_at=self._clock.wall()
        )
        pos.saved, pos.saved_at, pos.unsaved_changes = token, now, 0

    async def _final_save(self, term: Term, pos: _Position) -> None:
        """At the end of a term, save the last published position if we still may (shielded)."""
        if pos.token is None or pos.token == pos.saved:
            return
        try:
            self._leadership.ensure(term)
        except NotLeader:
            return  # deposed: the next leader replays from the last saved token
        save = asyncio.create_task(
            self._save(term, pos, force=True), name="watcher.final-token-save"
        )
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            await _settle(save)
            raise
        except Exception as e:
            log.warning("final token save failed", error=type(e).__name__, detail=str(e))
        else:
            log.info("final resume token saved", changes=pos.unsaved_changes)

    async def _scan_keys(self) -> None:
        if self._key_field == "_id":
            return
        learned = 0
        async for doc_id, doc in self._source.scan_keys(self._key_field):
            key = key_of(doc, self._key_field) if isinstance(doc, Mapping) else None
            if key is not None:
                self._translator.keys.learn(doc_id, key)
                learned += 1
        log.info("document keys learned", count=learned)


def event_wall_time(change: Mapping[str, Any]) -> float | None:
    """When the change happened (unix seconds): ``wallTime`` (6.0+), else ``clusterTime``.

    After a change is published, everything committed before this moment was published
    too (a change stream is ordered), so it bounds how far the replicas' state trails.
    """
    wall = change.get("wallTime")
    if isinstance(wall, datetime.datetime):
        if wall.tzinfo is None:
            wall = wall.replace(tzinfo=datetime.UTC)
        return wall.timestamp()
    ts = change.get("clusterTime")
    return float(ts.time) if isinstance(ts, Timestamp) else None


async def _settle(task: asyncio.Task[None]) -> None:
    try:
        await task
    except Exception as e:
        log.warning("final token save failed", error=type(e).__name__, detail=str(e))


_STOPPED: Final = object()


async def _next_unless_stopped(stream: ChangeStream, stopped: asyncio.Task[Any]) -> object:
    """``stream.try_next()``, or :data:`_STOPPED` if ``stopped`` finishes while it waits."""
    if stopped.done():
        return _STOPPED
    following = asyncio.ensure_future(stream.try_next())
    try:
        await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the term ends: its getMore must not outlive it
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        raise
    if following.done():
        return following.result()  # a change that arrived is handled, even while stopping
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    return _STOPPED


async def _close_quietly(stream: ChangeStream) -> None:
    try:
        async with asyncio.timeout(2.0):
            await stream.close()
    except Exception as e:
        log.info("change stream close failed", error=type(e).__name__)
