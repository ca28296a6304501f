"""The subscriber's rules (DESIGN.md rule 2): buffered start, order, gaps, epochs, silence."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tenacity import wait_exponential

from service.caching import ConfigCache
from service.errors import FeedLost, ResyncRequired, StoreError
from service.feed import SUBSCRIBED
from service.subscribing import Subscriber
from shared.backoff import Backoff
from shared.messages import Message, encode
from tests.unit.service.fakes import (
    FakeClock,
    FakeStore,
    ScriptedFeed,
    config,
    delete,
    heartbeat,
    resync,
    upsert,
)

HEARTBEAT_S = 1.0
ROOT = Path(__file__).resolve().parents[3]
KEY = b"0123456789abcdef-hmac"


class Rig:
    """A subscriber wired to a fake store, a scripted feed and a fake clock."""

    def __init__(
        self,
        docs: list[dict[str, Any]] | None = None,
        *,
        seq: int = 0,
        epoch: int | None = 1,
        hmac_key: bytes | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.store = FakeStore(docs)
        self.feed = ScriptedFeed(self.clock, seq=seq, epoch=epoch)
        self.cache = ConfigCache(
            store=self.store,
            key_field="source_id",
            negative_ttl_s=2.0,
            max_staleness_s=30.0,
            clock=self.clock,
        )
        self.sleeps: list[float] = []
        self.sub = Subscriber(
            feed=self.feed,
            store=self.store,
            cache=self.cache,
            key_field="source_id",
            heartbeat_interval_s=HEARTBEAT_S,
            resync_jitter_s=0.5,
            hmac_key=hmac_key,
            poll_s=0.001,
            clock=self.clock,
            sleep=self._sleep,
            jitter=lambda: 0.5,
            backoff=Backoff(base=0.1, cap=5.0, wait=wait_exponential(multiplier=0.1, max=5.0)),
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def doc(self, key: str) -> dict[str, Any] | None:
        return self.cache.snapshot.by_key.get(key)

    async def started(self) -> Rig:
        await self.sub.sync(None)
        return self


async def test_start_drops_buffered_messages_up_to_s0_and_applies_the_rest_in_order() -> None:
    """Messages with seq <= S0 are already in the load; later ones are replayed in order."""
    rig = Rig([config("a", v="loaded"), config("b", v="loaded"), config("c")], seq=5)

    def arrive_during_load() -> None:
        rig.feed.push_messages(
            upsert(4, "a", v="old"),
            upsert(5, "b", v="stale"),
            heartbeat(5),
            upsert(6, "a", v="new"),
            delete(7, "c"),
            upsert(8, "d", v="new"),
        )

    rig.store.on_load = arrive_during_load
    await rig.sub.sync(None)
    assert rig.doc("a") == config("a", v="new")
    assert rig.doc("b") == config("b", v="loaded")
    assert rig.doc("c") is None
    assert rig.doc("d") == config("d", v="new")
    assert rig.sub.state.last_seq == 8 and rig.cache.warmed


async def test_serving_snapshot_is_whole_while_a_reload_runs() -> None:
    """During a reload lookups answer from the previous snapshot, never an empty map."""
    rig = await Rig([config("a"), config("b")]).started()
    rig.store.gate = asyncio.Event()
    rig.store.entered.clear()
    reload = asyncio.create_task(rig.sub.sync("gap"))
    await rig.store.entered.wait()
    for _ in range(5):
        assert rig.cache.size == 2
        assert (await rig.cache.get_config_by_source_id("a")) == config("a")
        await asyncio.sleep(0)
    rig.store.put(config("c"))
    rig.store.gate.set()
    await reload
    assert rig.cache.size == 2  # load snapshot taken before "c" was written
    assert rig.sub.state.resyncs["gap"] == 1


async def test_a_gap_while_buffering_forces_another_sync() -> None:
    """A missing seq among the buffered messages fails the start (the caller resyncs)."""
    rig = Rig(seq=5)
    rig.store.on_load = lambda: rig.feed.push_messages(upsert(6, "a"), upsert(8, "b"))
    with pytest.raises(ResyncRequired) as caught:
        await rig.sub.sync(None)
    assert caught.value.reason == "gap"
    assert not rig.cache.warmed


async def test_resubscription_during_the_load_restarts_nothing_but_a_lost_message_shows() -> None:
    """A resubscription while loading is no reason by itself; the seq after it proves a loss."""
    rig = Rig(seq=5)
    rig.store.on_load = lambda: rig.feed.push(
        encode(upsert(6, "a")), SUBSCRIBED, encode(upsert(8, "b"))
    )
    with pytest.raises(ResyncRequired) as caught:
        await rig.sub.sync(None)
    assert caught.value.reason == "gap"
    clean = Rig(seq=5)
    clean.store.on_load = lambda: clean.feed.push(SUBSCRIBED, encode(upsert(6, "a")))
    await clean.sub.sync(None)
    assert clean.cache.warmed and clean.doc("a") is not None


async def test_in_order_messages_are_applied_and_make_the_stream_active() -> None:
    """Upserts and deletes in seq order change the cache; a heartbeat marks it fresh."""
    rig = await Rig([config("gone")], seq=10).started()
    rig.feed.push_messages(upsert(11, "a", v=1), delete(12, "gone"), heartbeat(12))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == config("a", v=1) and rig.doc("gone") is None
    assert rig.sub.state.last_seq == 12
    assert rig.cache.invalidations["upsert"] == 1 and rig.cache.invalidations["delete"] == 1


async def test_gap_triggers_resync() -> None:
    """A skipped seq is reported as a gap and the later message is not applied."""
    rig = await Rig(seq=3).started()
    rig.feed.push_messages(upsert(4, "a"), upsert(6, "b"))
    assert await rig.sub.follow() == "gap"
    assert rig.doc("a") is not None and rig.doc("b") is None


async def test_heartbeat_ahead_of_us_triggers_resync() -> None:
    """A heartbeat carrying a seq we never received means we lost messages."""
    rig = await Rig(seq=3).started()
    rig.feed.push_messages(heartbeat(3), heartbeat(5))
    assert await rig.sub.follow() == "heartbeat_ahead"


async def test_duplicates_are_ignored() -> None:
    """A message at or below the applied seq, same epoch, changes nothing."""
    rig = await Rig([config("a", v="current")], seq=7).started()
    rig.feed.push_messages(upsert(7, "a", v="replayed"), upsert(5, "a", v="older"))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == config("a", v="current")
    assert rig.sub.state.duplicates == 2


async def test_epoch_going_backwards_resyncs_even_when_seq_looks_old() -> None:
    """After a Redis restart (seq and epoch from 1) new messages are not taken as duplicates."""
    rig = await Rig(seq=100, epoch=3).started()
    rig.feed.push_messages(upsert(1, "a", epoch=1))
    assert await rig.sub.follow() == "epoch_backwards"


async def test_a_new_leader_epoch_is_followed() -> None:
    """A higher epoch with the next seq is a failover: applied, and the epoch moves on."""
    rig = await Rig(seq=4, epoch=2).started()
    rig.feed.push_messages(upsert(5, "a", epoch=3), heartbeat(5, epoch=3))
    assert await rig.sub.follow() == "silent"
    assert rig.sub.state.epoch == 3 and rig.doc("a") is not None


async def test_garbage_is_rejected_counted_and_triggers_resync() -> None:
    """Bytes that are not a message are counted by reason, logged, and cause a resync."""
    rig = await Rig().started()
    rig.feed.push(b"{not json")
    with capture_logs() as logs:
        assert await rig.sub.follow() == "bad_message"
    assert rig.sub.state.rejected["bad_json"] == 1
    assert any(e["event"] == "invalidation message rejected" for e in logs)


async def test_unsigned_message_is_rejected_when_hmac_is_on() -> None:
    """With an HMAC key configured, an unsigned message is rejected, a signed one applied."""
    rig = await Rig(hmac_key=KEY).started()
    rig.feed.push_messages(upsert(1, "signed"), hmac_key=KEY)
    rig.feed.push_messages(upsert(2, "unsigned"))
    assert await rig.sub.follow() == "bad_message"
    assert rig.doc("signed") is not None and rig.doc("unsigned") is None
    assert rig.sub.state.rejected["unsigned"] == 1


async def test_second_subscribe_confirmation_unconfirms_until_the_next_heartbeat() -> None:
    """redis-py's own resubscription makes the stream inactive; the next heartbeat decides."""
    rig = await Rig().started()
    rig.feed.push_messages(upsert(1, "a"), heartbeat(1))
    rig.feed.push(SUBSCRIBED)
    rig.feed.push_messages(heartbeat(3))
    assert await rig.sub.follow() == "heartbeat_ahead"
    assert not rig.sub.state.stream_active and rig.store.loads == 1
    quiet = await Rig().started()
    quiet.feed.push_messages(upsert(1, "a"), heartbeat(1))
    quiet.feed.push(SUBSCRIBED)
    quiet.feed.push_messages(heartbeat(1))
    assert await quiet.sub.follow() == "silent"  # nothing was lost: confirmed, no reload
    assert quiet.sub.state.resubscriptions == 1 and quiet.store.loads == 1


async def test_broadcast_resync_message_triggers_resync() -> None:
    """The watcher's ``resync`` message makes the replica reload."""
    rig = await Rig(seq=2).started()
    rig.feed.push_messages(resync(3))
    assert await rig.sub.follow() == "broadcast"
    assert rig.sub.state.last_seq == 3


async def test_refetch_upsert_reads_the_key_from_mongodb() -> None:
    """A key-only upsert (document too large for a message) is fetched from MongoDB."""
    rig = await Rig().started()
    rig.store.put(config("big", blob="x" * 10))
    rig.feed.push_messages(Message(kind="upsert", seq=1, epoch=1, key="big", refetch=True))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("big") == config("big", blob="x" * 10)
    assert rig.store.key_reads == ["big"] and rig.cache.invalidations["refetch"] == 1


async def test_silence_marks_the_stream_inactive_then_asks_for_reconnect() -> None:
    """No heartbeat for 3 intervals: inactive (not ready); resubscribe follows, backing off."""
    rig = await Rig().started()
    rig.feed.push_messages(heartbeat(0))
    assert await rig.sub.follow() == "silent"
    assert not rig.sub.state.stream_active and not rig.sub.ready
    await rig.sub._open()  # what run() does after "silent"
    first = rig.clock()
    assert await rig.sub.follow() == "silent"
    assert rig.clock() - first == 2 * 3 * HEARTBEAT_S  # still silent: wait twice as long


async def test_run_resyncs_after_a_gap_and_counts_it() -> None:
    """run(): a gap leads to exactly one more full load, counted under ``gap``."""
    rig = Rig(seq=0)
    rig.feed.push_later(upsert(1, "a"), upsert(3, "b"))
    await rig.sub.run(max_cycles=2)
    assert rig.store.loads == 2
    assert rig.sub.state.resyncs["gap"] == 1
    assert rig.feed.opens == 1  # same subscription, no reconnect needed


async def test_run_survives_redis_down_at_start_up() -> None:
    """Subscription failures are retried with backoff; the first success loads the cache."""
    rig = Rig([config("a")])
    rig.feed.open_failures.extend([FeedLost("refused"), FeedLost("refused")])
    await rig.sub.run(max_cycles=3)
    assert rig.feed.opens == 3 and rig.store.loads == 1
    assert sum(rig.sub.state.resyncs.values()) == 0  # start-up retries are not resyncs
    assert rig.sleeps[:2] == [0.1, 0.2]
    assert rig.cache.warmed


async def test_run_keeps_the_cache_when_the_connection_drops_mid_stream() -> None:
    """A lost connection keeps the last good cache and reconnects; no loss, no reload."""
    rig = Rig([config("a")])
    rig.feed.push_later(heartbeat(0), FeedLost("reset by peer"))
    await rig.sub.run(max_cycles=2)
    assert rig.feed.opens == 2 and rig.store.loads == 1
    assert sum(rig.sub.state.resyncs.values()) == 0
    assert rig.doc("a") == config("a")


async def test_run_retries_a_failed_load_without_dropping_the_cache() -> None:
    """A MongoDB failure during a reload is retried; the old snapshot keeps serving."""
    rig = Rig([config("a")])
    rig.feed.push_later(resync(1))
    original = rig.store.load_all
    calls = 0

    async def flaky_load() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreError("primary stepped down")
        return await original()

    rig.store.load_all = flaky_load  # type: ignore[method-assign]
    await rig.sub.run(max_cycles=3)
    assert calls == 3
    assert rig.sub.state.resyncs == {**rig.sub.state.resyncs, "broadcast": 1, "store_error": 1}
    assert rig.doc("a") == config("a")
    assert 0.25 in rig.sleeps  # jittered broadcast resync (0.5 * 0.5 s)


async def test_a_storm_of_bad_messages_does_not_become_a_storm_of_reloads() -> None:
    """A resync right after a load waits out the minimum interval (1 s) before reloading."""
    rig = Rig()
    load_times: list[float] = []
    rig.store.on_load = lambda: load_times.append(rig.clock())
    rig.feed.push_later(b"junk", b"junk", b"junk")
    await rig.sub.run(max_cycles=4)
    assert rig.sub.state.rejected["bad_json"] == 3
    assert len(load_times) >= 2
    gaps = [b - a for a, b in zip(load_times, load_times[1:], strict=False)]
    assert min(gaps) >= 1.0  # every reload waited out the full interval after the last
    assert rig.cache.warmed


async def test_changes_arriving_while_a_reload_is_deferred_are_applied_at_once() -> None:
    """While a resync waits out the reload spacing, newer changes still reach the cache."""
    rig = await Rig([config("a")]).started()
    rig.feed.push_messages(
        Message(kind="resync", seq=1, epoch=1, reason="operator"),
    )
    assert await rig.sub.follow() == "broadcast"
    seen: list[dict[str, Any] | None] = []
    rig.store.on_load = lambda: seen.append(rig.doc("b"))
    rig.feed.push_messages(upsert(2, "b"))
    await rig.sub._pace("broadcast")
    assert rig.doc("b") is not None  # applied during the wait, before any reload
    assert seen == []  # ...and no reload has run yet


async def test_silence_in_run_resubscribes_without_reloading() -> None:
    """run(): silence closes the subscription and opens a new one; silence proves no loss."""
    rig = Rig()
    await rig.sub.run(max_cycles=2)
    assert rig.feed.opens == 2 and rig.store.loads == 1
    assert sum(rig.sub.state.resyncs.values()) == 0
    assert rig.feed.closes >= 2


async def test_lag_is_measured_on_changes_not_on_heartbeats() -> None:
    """scc_replica_lag_seconds follows change messages; a heartbeat's old cluster time is no lag."""
    rig = await Rig().started()
    now = rig.sub._wall()
    change = Message(kind="upsert", seq=1, epoch=1, key="a", doc=config("a"), cluster_time=now - 2)
    beat = Message(kind="heartbeat", seq=1, epoch=1, cluster_time=now - 3600)
    rig.feed.push_messages(change, beat)
    assert await rig.sub.follow() == "silent"
    lag = rig.sub.state.lag_seconds
    assert lag is not None and 2 <= lag < 60


async def test_a_known_gap_with_a_failing_reload_is_never_served_as_in_sync() -> None:
    """After a gap whose reload keeps failing, heartbeats do not make the cache current again."""
    rig = Rig([config("a", v="old")])
    rig.feed.push_later(upsert(1, "a", v="new"), upsert(3, "b"), heartbeat(3), heartbeat(3))
    original = rig.store.load_all
    calls = 0

    async def load_then_fail() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise StoreError("primary unreachable")
        return await original()

    rig.store.load_all = load_then_fail  # type: ignore[method-assign]
    await rig.sub.run(max_cycles=4)
    state = rig.sub.state
    assert calls >= 2 and state.pending_resync == "gap"
    assert not state.stream_active and not rig.sub.ready
    rig.clock.advance(31.0)  # past SCC_MAX_STALENESS_S (30 s) since the last confirmation
    rig.store.load_all = original  # type: ignore[method-assign]
    rig.store.put(config("a", v="from-mongodb"))
    assert await rig.cache.get_config_by_source_id("a") == config("a", v="from-mongodb")


async def test_a_replayed_older_change_never_moves_a_config_backwards() -> None:
    """An upsert whose cluster time is older than the cached version is skipped, seq moves on."""
    rig = await Rig().started()
    rig.feed.push_messages(
        upsert(1, "a", v="new", ct=(100, 2), doc_id=7),
        upsert(2, "a", v="replayed-old", ct=(100, 1), doc_id=7),
        delete(3, "a", ct=(99, 0), doc_id=7),
        heartbeat(3),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == {**config("a", v="new"), "_id": 7}
    assert rig.sub.state.last_seq == 3 and rig.sub.applier.older_skipped == 2


async def test_a_delete_is_remembered_so_an_older_insert_does_not_resurrect_it() -> None:
    """After a delete at time t, a replayed insert from before t leaves the key deleted."""
    rig = await Rig().started()
    rig.feed.push_messages(
        upsert(1, "a", ct=(50, 0), doc_id=1),
        delete(2, "a", ct=(60, 0), doc_id=1),
        upsert(3, "a", ct=(50, 0), doc_id=1),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") is None


async def test_a_reload_floors_every_document_at_its_read_time() -> None:
    """A replayed change older than the reload's majority read time changes nothing."""
    rig = Rig([{**config("a", v="loaded"), "_id": 1}])
    rig.store.time = (200, 0)
    await rig.sub.sync(None)
    rig.feed.push_messages(
        upsert(1, "a", v="replayed", ct=(150, 3), doc_id=1),
        upsert(2, "b", v="new", ct=(201, 0), doc_id=2),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == {**config("a", v="loaded"), "_id": 1}
    assert rig.doc("b") is not None


async def test_a_new_leader_term_continuing_the_sequence_costs_no_reload() -> None:
    """Leader failover: the new term's first change follows our seq, so nothing reloads."""
    rig = Rig([config("a")])
    rig.feed.term = "old"
    rig.feed.push_later(
        upsert(1, "a", v=1, term="old"),
        heartbeat(1, epoch=2, term="new"),
        upsert(2, "a", v=2, epoch=2, term="new"),
    )
    await rig.sub.run(max_cycles=2)
    assert rig.store.loads == 1 and rig.doc("a") == config("a", v=2)
    assert rig.sub.state.term == "new" and sum(rig.sub.state.resyncs.values()) == 0


async def test_garbage_reloads_a_few_times_then_is_only_counted() -> None:
    """A stream of garbage costs at most a few reloads a minute, however long it lasts."""
    rig = await Rig().started()
    rig.feed.push(*[b"junk"] * 50)
    outcomes = [await rig.sub.follow() for _ in range(4)]
    assert outcomes == ["bad_message", "bad_message", "bad_message", "silent"]
    assert rig.sub.state.rejected["bad_json"] == 50


async def test_a_redis_outage_of_any_length_never_ends_the_subscriber() -> None:
    """2,000 failed reconnects in a row (hours of outage): capped waits, no overflow, no exit."""
    rig = Rig([config("a")])
    rig.sub._backoff = Backoff(base=0.1, cap=5.0)  # the production strategy (full jitter)
    rig.feed.open_failures.extend(FeedLost("refused") for _ in range(2_000))
    await rig.sub.run(max_cycles=2_001)
    assert rig.feed.opens == 2_001 and rig.cache.warmed
    assert len(rig.sleeps) == 2_000 and max(rig.sleeps) <= 5.0


async def test_a_heartbeat_from_a_watcher_replaying_a_backlog_does_not_confirm_the_cache() -> None:
    """behind > half the staleness bound: inactive, and the cache counts as that old."""
    rig = await Rig().started()
    rig.feed.push_messages(Message(kind="heartbeat", seq=0, epoch=1, behind=20.0))
    assert await rig.sub.follow() == "silent"
    assert rig.sub.state.behind_s == 20.0 and not rig.sub.state.stream_active
    age = rig.cache.age_seconds()
    assert age is not None and age >= 20.0
    caught_up = await Rig().started()
    caught_up.feed.push_messages(Message(kind="heartbeat", seq=0, epoch=1, behind=0.2))
    caught_up.sub._heartbeat_s = 1000.0  # stop before silence turns it inactive again
    caught_up.feed.push(FeedLost("end of script"))
    with pytest.raises(FeedLost):
        await caught_up.sub.follow()
    assert caught_up.sub.state.stream_active


async def test_a_read_through_stamps_the_document_so_a_replay_cannot_undo_it() -> None:
    """A document read from MongoDB at time T is not replaced by a replayed change older than T."""
    rig = await Rig([{**config("a", v="old"), "_id": 1}]).started()
    rig.store.put({**config("a", v="current"), "_id": 1})
    rig.store.time = (500, 0)
    rig.clock.advance(31.0)  # unconfirmed and older than the bound: lookups read through
    assert await rig.cache.get_config_by_source_id("a") == {**config("a", v="current"), "_id": 1}
    rig.feed.push_messages(upsert(1, "a", v="replayed", ct=(400, 0), doc_id=1))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == {**config("a", v="current"), "_id": 1}


async def test_a_replayed_earlier_incarnation_of_a_key_does_not_replace_the_later_one() -> None:
    """Key deleted and created again (new _id): replaying the old document leaves the new one."""
    rig = await Rig().started()
    rig.feed.push_messages(
        upsert(1, "a", v="second-life", ct=(200, 0), doc_id="new"),
        upsert(2, "a", v="first-life", ct=(150, 0), doc_id="old"),
        delete(3, "a", ct=(160, 0), doc_id="old"),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == {**config("a", v="second-life"), "_id": "new"}


async def test_a_miss_read_while_live_is_floored_too() -> None:
    """A key read from MongoDB while the stream is live is not undone by an older replay."""
    rig = await Rig().started()
    rig.feed.push_messages(heartbeat(0))
    await rig.sub.follow()
    rig.store.put({**config("new", v="current"), "_id": 5})
    rig.store.time = (300, 0)
    assert await rig.cache.get_config_by_source_id("new") == {
        **config("new", v="current"),
        "_id": 5,
    }
    rig.feed.push_messages(upsert(1, "new", v="replayed", ct=(250, 0), doc_id=5))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("new") == {**config("new", v="current"), "_id": 5}


async def test_a_refetched_document_is_stamped_with_the_read_time() -> None:
    """A key-only change is read now; older replayed changes that follow cannot undo it."""
    rig = await Rig().started()
    rig.store.put({**config("big", v="now"), "_id": 9})
    rig.store.time = (400, 0)
    rig.feed.push_messages(
        Message(kind="upsert", seq=1, epoch=1, key="big", refetch=True, doc_id=9, ct=(100, 0)),
        upsert(2, "big", v="replayed", ct=(200, 0), doc_id=9),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("big") == {**config("big", v="now"), "_id": 9}


async def test_a_refetch_that_finds_another_document_does_not_stamp_the_moved_one() -> None:
    """Refetch of key a finds doc 2 there now: doc 1 (moved to key b) still takes its move."""
    rig = await Rig().started()
    rig.store.put({**config("a", v="doc2"), "_id": 2})
    rig.store.time = (900, 0)
    rig.feed.push_messages(
        Message(kind="upsert", seq=1, epoch=1, key="a", refetch=True, doc_id=1, ct=(100, 0)),
        upsert(2, "b", v="doc1-moved", ct=(500, 0), doc_id=1),
    )
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == {**config("a", v="doc2"), "_id": 2}
    assert rig.doc("b") == {**config("b", v="doc1-moved"), "_id": 1}


async def test_a_key_read_as_absent_is_not_revived_by_an_older_replay() -> None:
    """MongoDB said no config has key a (as of T): a replayed create from before T stays out."""
    rig = await Rig([{**config("a", v="old-life"), "_id": 1}]).started()
    rig.store.docs.clear()
    rig.store.time = (300, 0)
    rig.clock.advance(31.0)
    assert await rig.cache.get_config_by_source_id("a") is None
    rig.feed.push_messages(upsert(1, "a", v="earlier-life", ct=(250, 0), doc_id=2))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") is None


async def test_the_first_load_settles_the_heap_once_and_reloads_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the first installed load the subscriber settles the heap (gc.freeze, where the
    process opted in); a reload does not freeze again."""
    settled: list[int] = []
    rig = Rig([config("a"), config("b")])
    monkeypatch.setattr("service.subscribing.settle_heap", lambda: settled.append(rig.cache.size))
    await rig.started()
    assert settled == [2]  # after the load was installed
    await rig.sub.sync("gap")
    assert settled == [2]


def test_settle_heap_freezes_once_and_only_where_the_process_opted_in() -> None:
    """In a fresh interpreter: nothing is frozen until the process opts in; then the first
    call freezes what is alive and later calls do nothing."""
    code = (
        "import gc\n"
        "from service.applying import settle_heap, settle_heap_after_first_load\n"
        "settle_heap(); before = gc.get_freeze_count()\n"
        "settle_heap_after_first_load(); settle_heap(); frozen = gc.get_freeze_count()\n"
        "kept = [[i] for i in range(1000)]\n"
        "settle_heap(); again = gc.get_freeze_count()\n"
        "print(before, frozen > 0, again == frozen)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.split() == ["0", "True", "True"]
