"""The follower against in-memory fakes: publish-then-save, resyncs, restarts, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import structlog

from shared.messages import Message
from tests.unit.watcher.fakes import FakeChannel, FakeRedis, FakeSource, FakeTokens, position, token
from watcher.electing import Leadership, Term
from watcher.errors import FencedOut, HistoryLost, SourceUnavailable
from watcher.publishing import Publisher
from watcher.reporting import WatcherStats
from watcher.timing import SYSTEM_CLOCK, Backoff
from watcher.translating import KeyMap, Translator
from watcher.watching import Follower, _next_unless_stopped


@dataclass
class Rig:
    redis: FakeRedis
    source: FakeSource
    tokens: FakeTokens
    leadership: Leadership
    term: Term
    stats: WatcherStats
    follower: Follower

    def messages(self) -> list[Message]:
        return self.redis.messages()

    def keys_published(self) -> list[tuple[str, str | None]]:
        return [(m.kind, m.key) for m in self.messages() if m.kind != "heartbeat"]


#: The batch bound every test here runs with (both ways, see :func:`batching`).
_BATCH = {"max_changes": 1}


@pytest.fixture(autouse=True, params=[1, 50], ids=["unbatched", "batched"])
def batching(request: pytest.FixtureRequest) -> None:
    """Run every follower test with one message per change and with batches."""
    _BATCH["max_changes"] = request.param


def rig(
    save_interval_ms: int = 0, source: FakeSource | None = None, batch: int | None = None
) -> Rig:
    redis = FakeRedis(leader="w", epoch=1, expires_at=time.monotonic() + 60)
    source = source or FakeSource()
    tokens = FakeTokens(redis, "w")
    leadership = Leadership()
    term = Term(epoch=1, acquired_at=time.monotonic())
    leadership.grant(term, time.monotonic() + 60)
    stats = WatcherStats(instance_id="w", started_at=0.0)
    publisher = Publisher(
        channel=FakeChannel(redis, "w"),
        leadership=leadership,
        stats=stats,
        clock=SYSTEM_CLOCK,
        batch_max_changes=_BATCH["max_changes"] if batch is None else batch,
    )
    follower = Follower(
        source=source,
        tokens=tokens,
        publisher=publisher,
        translator=Translator(key_field="source_id", keys=KeyMap(), stats=stats),
        leadership=leadership,
        stats=stats,
        clock=SYSTEM_CLOCK,
        key_field="source_id",
        token_save_interval_ms=save_interval_ms,
        backoff=Backoff(base=0.001, cap=0.01),
    )
    return Rig(redis, source, tokens, leadership, term, stats, follower)


@asynccontextmanager
async def following(r: Rig) -> AsyncIterator[asyncio.Task[None]]:
    """Run the follower in a named task; stop it gracefully on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(r.follower.follow(r.term, stop), name="test.follower")
    try:
        yield task
    finally:
        stop.set()
        await task


async def eventually(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_without_a_token_it_opens_from_now_publishes_resync_and_saves_at_once() -> None:
    """No stored token: stream opened from now, ``resync(no_token)`` sent, token saved."""
    r = rig()
    r.source.insert(1, "before")  # history that predates the watcher: not replayed
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) >= 1)
        r.source.insert(2, "after")
        await eventually(lambda: ("upsert", "after") in r.keys_published())
    assert r.source.opened == [1]
    assert r.keys_published()[0] == ("resync", None)
    assert r.messages()[0].reason == "no_token"
    assert r.tokens.saves[0] == token(1)
    assert ("upsert", "before") not in r.keys_published()


async def test_with_a_token_it_resumes_after_it_without_resync() -> None:
    """A stored token resumes right after it: later changes are published, no resync."""
    r = rig()
    for n in range(5):
        r.source.insert(n, f"k{n}")
    r.tokens.set(token(3))
    async with following(r):
        await eventually(lambda: bool(r.tokens.saves) and position(r.tokens.saves[-1]) == 5)
    assert r.keys_published() == [("upsert", "k3"), ("upsert", "k4")]


async def test_corrupt_token_resyncs_with_a_clear_log_line() -> None:
    """A corrupt stored token → one error line naming it, ``resync(corrupt_token)``, new token."""
    r = rig()
    r.redis.token = {"token": "{not json", "epoch": "1"}
    with structlog.testing.capture_logs() as logs:
        async with following(r):
            await eventually(lambda: len(r.tokens.saves) >= 1)
    assert [m.reason for m in r.messages() if m.kind == "resync"] == ["corrupt_token"]
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "corrupt" in errors[0]["event"]
    assert "not extended JSON" in errors[0]["detail"]


async def test_history_lost_publishes_exactly_one_resync_and_restarts_from_now() -> None:
    """A token the oplog no longer covers → one ``resync(history_lost)``, stream from now."""
    r = rig()
    for n in range(4):
        r.source.insert(n, f"k{n}")
    r.tokens.set(token(1))
    r.source.forget_before(2)
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) >= 1)
        r.source.insert(9, "k9")
        await eventually(lambda: ("upsert", "k9") in r.keys_published())
    assert [m.reason for m in r.messages() if m.kind == "resync"] == ["history_lost"]
    assert r.source.opened == [4]
    assert r.stats.resyncs == {"history_lost": 1}


async def test_drop_publishes_resync_and_restarts_the_stream() -> None:
    """A ``drop`` event ends the stream: one ``resync(drop)``, a new stream from now."""
    r = rig()
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) >= 1)
        r.source.insert(1, "k1")
        r.source.drop()
        await eventually(lambda: len(r.source.opened) == 2)
        r.source.insert(2, "k2")
        await eventually(lambda: ("upsert", "k2") in r.keys_published())
    resyncs = [m.reason for m in r.messages() if m.kind == "resync"]
    assert resyncs == ["no_token", "drop"]
    assert r.source.opened == [0, 3]  # after drop+invalidate, from now


async def test_a_transient_error_reopens_from_the_last_published_change() -> None:
    """A network error mid-stream resumes from the last published position: no gap, no resync."""
    r = rig(save_interval_ms=60_000)
    r.source.insert(0, "k0")
    r.tokens.set(token(0))
    async with following(r):
        await eventually(lambda: ("upsert", "k0") in r.keys_published())
        r.source.next_errors.append(SourceUnavailable("connection reset"))
        r.source.insert(1, "k1")
        await eventually(lambda: len(r.source.opened) == 2)
        await eventually(lambda: ("upsert", "k1") in r.keys_published())
    assert r.source.opened == [0, 1]
    assert [k for k in r.keys_published() if k[0] == "resync"] == []
    assert r.stats.errors["SourceUnavailable"] == 1


async def test_open_errors_are_retried_with_backoff_not_fatal() -> None:
    """Opening the stream can fail a few times; the follower keeps trying and then follows."""
    r = rig()
    r.source.open_errors = [SourceUnavailable("no primary")] * 3
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) >= 1)
    assert r.stats.errors["SourceUnavailable"] == 3


async def test_the_saved_token_never_points_past_an_unpublished_change() -> None:
    """At every save, each change before the saved position has already been published."""
    r = rig(save_interval_ms=0)
    seen_at_save: list[tuple[int, int]] = []
    original = r.tokens.save

    async def save(tok, **kw):  # type: ignore[no-untyped-def]
        seen_at_save.append((position(tok), len(r.keys_published())))
        await original(tok, **kw)

    r.tokens.save = save  # type: ignore[method-assign]
    async with following(r):
        await eventually(lambda: len(seen_at_save) >= 1)
        for n in range(30):
            r.source.insert(n, f"k{n}")
        await eventually(lambda: bool(r.tokens.saves) and position(r.tokens.saves[-1]) == 30)
    for saved_position, published in seen_at_save:
        assert published >= saved_position + 1  # +1: the resync that came first


async def test_idle_saves_are_throttled_to_the_interval() -> None:
    """On an idle stream the post-batch token is saved at most once per interval."""
    r = rig(save_interval_ms=60_000)
    async with following(r):
        await eventually(lambda: r.source.empty_batches >= 20)
    assert len(r.tokens.saves) == 1  # the save right after the resync; none while idle


async def test_changes_are_saved_when_the_batch_ends_even_within_the_interval() -> None:
    """After published changes, the next empty batch saves the position without waiting."""
    r = rig(save_interval_ms=60_000)
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        r.source.insert(1, "k1")
        await eventually(lambda: len(r.tokens.saves) == 2)
    assert r.tokens.saves[-1] == token(1)


async def test_stop_saves_the_last_published_position() -> None:
    """A graceful stop saves the position of the last published change."""
    r = rig(save_interval_ms=60_000)
    r.source.await_s = 0.05
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        r.source.insert(1, "k1")
        await eventually(lambda: ("upsert", "k1") in r.keys_published())
    assert r.tokens.saves[-1] == token(1)


async def test_fenced_out_stops_following_and_leaves_the_token_alone() -> None:
    """When another leader took over, the follower raises FencedOut and saves nothing more."""
    r = rig(save_interval_ms=0)
    stop = asyncio.Event()
    task = asyncio.create_task(r.follower.follow(r.term, stop), name="test.follower")
    await eventually(lambda: len(r.tokens.saves) == 1)
    r.redis.leader, r.redis.epoch = "other", 2
    r.source.insert(1, "k1")
    with pytest.raises(FencedOut):
        await asyncio.wait_for(task, 2)
    assert len(r.tokens.saves) == 1
    assert ("upsert", "k1") not in r.keys_published()


async def test_a_delete_names_a_key_learned_by_the_initial_scan() -> None:
    """Documents that existed before the term are scanned, so their deletes name their keys."""
    source = FakeSource()
    source.docs[7] = {"_id": 7, "source_id": "seven"}
    r = rig(source=source)
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        source.delete(7)
        await eventually(lambda: ("delete", "seven") in r.keys_published())


async def test_a_refused_token_mid_stream_resyncs_once() -> None:
    """A history-lost error from ``try_next`` (failed driver resume) resyncs once, from now."""
    r = rig()
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        r.source.next_errors.append(HistoryLost("history_lost", "code 286"))
        r.source.insert(1, "k1")  # lost with the history; the resync covers it
        await eventually(lambda: len(r.source.opened) == 2)
        await eventually(lambda: len(r.tokens.saves) == 2)
    assert r.source.opened == [0, 1] and r.tokens.saves[-1] == token(1)
    assert [m.reason for m in r.messages() if m.kind == "resync"] == ["no_token", "history_lost"]


@pytest.mark.parametrize("op", ["invalidate", "rename", "dropDatabase"])
async def test_every_stream_ending_event_publishes_resync_with_its_name(op: str) -> None:
    """``invalidate``/``rename``/``dropDatabase`` each → one ``resync`` naming it, then from now."""
    r = rig()
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        r.source._event(op)
        await eventually(lambda: len(r.source.opened) == 2)
        await eventually(lambda: op in [m.reason for m in r.messages()])
    assert [m.reason for m in r.messages() if m.kind == "resync"] == ["no_token", op]
    assert r.stats.resyncs[op] == 1


def test_an_events_wall_time_prefers_wall_time_then_cluster_time() -> None:
    """wallTime (MongoDB 6.0+) when present, else the clusterTime's seconds."""
    import datetime

    from bson.timestamp import Timestamp

    from watcher.watching import event_wall_time

    wall = datetime.datetime(2026, 1, 2, 3, 4, 5, 600000)
    assert event_wall_time({"wallTime": wall, "clusterTime": Timestamp(1, 1)}) == (
        wall.replace(tzinfo=datetime.UTC).timestamp()
    )
    assert event_wall_time({"clusterTime": Timestamp(1_700_000_000, 9)}) == 1_700_000_000.0
    assert event_wall_time({}) is None


async def test_a_cancelled_wait_for_the_next_change_cancels_its_getmore() -> None:
    """When the term is cancelled while waiting for the next change, the getMore it
    started is cancelled too (it used to outlive the term, running beside the close)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    class SlowStream:
        async def try_next(self) -> None:
            started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    stopped = asyncio.create_task(asyncio.Event().wait())
    waiting = asyncio.create_task(_next_unless_stopped(SlowStream(), stopped))  # type: ignore[arg-type]
    await started.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cancelled.is_set()
    stopped.cancel()
    await asyncio.gather(stopped, return_exceptions=True)
