"""The subscriber with batch messages: seq ranges, partial overlaps, one-step apply."""

from __future__ import annotations

import asyncio

from shared.batches import encode_batch
from shared.messages import Message
from tests.unit.service.fakes import config, delete, heartbeat, upsert
from tests.unit.service.test_subscribing import KEY, Rig


def push_batch(rig: Rig, *messages: Message, hmac_key: bytes | None = None) -> None:
    rig.feed.push(encode_batch(list(messages), hmac_key=hmac_key))


async def test_a_batch_applies_every_change_and_moves_to_its_last_seq() -> None:
    """All changes of a batch reach the cache; the position is the batch's last seq."""
    rig = await Rig([config("gone")], seq=10).started()
    push_batch(rig, upsert(11, "a", v=1), delete(12, "gone"), upsert(13, "b", v=2))
    rig.feed.push_messages(heartbeat(13))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == config("a", v=1) and rig.doc("b") == config("b", v=2)
    assert rig.doc("gone") is None
    assert rig.sub.state.last_seq == 13


async def test_a_batch_overlapping_our_position_applies_only_the_part_above_it() -> None:
    """Changes at or below our seq are duplicates; the rest is applied."""
    rig = await Rig([config("a", v="current")], seq=11).started()
    push_batch(rig, upsert(10, "a", v="old"), upsert(11, "a", v="older"), upsert(12, "b", v=1))
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == config("a", v="current") and rig.doc("b") == config("b", v=1)
    assert (rig.sub.state.last_seq, rig.sub.state.duplicates) == (12, 2)


async def test_a_batch_beyond_the_next_seq_is_a_gap_and_applies_nothing() -> None:
    """A batch starting after ours + 1 proves a loss before any of it is applied."""
    rig = await Rig(seq=3).started()
    push_batch(rig, upsert(5, "a"), upsert(6, "b"))
    assert await rig.sub.follow() == "gap"
    assert rig.doc("a") is None and rig.doc("b") is None


async def test_a_batch_buffered_during_the_load_is_replayed_from_after_s0() -> None:
    """A batch spanning the starting seq contributes only its changes after it."""
    rig = Rig([config("a", v="loaded"), config("b", v="loaded")], seq=5)
    rig.store.on_load = lambda: push_batch(
        rig, upsert(4, "a", v="old"), upsert(5, "b", v="stale"), upsert(6, "c", v="new")
    )
    await rig.sub.sync(None)
    assert rig.doc("a") == config("a", v="loaded") and rig.doc("b") == config("b", v="loaded")
    assert rig.doc("c") == config("c", v="new")
    assert rig.sub.state.last_seq == 6


async def test_a_lookup_never_sees_half_a_batch_even_with_a_refetch_inside() -> None:
    """While a batch's key-only change is being read, none of the batch is visible yet."""
    rig = await Rig([config("a", v=0), config("big", v=0)], seq=1).started()
    rig.store.put(config("big", v="fresh"))
    rig.store.gate = asyncio.Event()
    rig.store.entered.clear()
    refetch = Message(kind="upsert", seq=3, epoch=1, key="big", refetch=True)
    push_batch(rig, upsert(2, "a", v=1), refetch, upsert(4, "c", v=1))
    follow = asyncio.create_task(rig.sub.follow())
    await rig.store.entered.wait()
    seen = []
    for _ in range(5):
        seen.append((rig.doc("a"), rig.doc("c")))
        await asyncio.sleep(0)
    assert seen == [(config("a", v=0), None)] * 5
    rig.store.gate.set()
    for _ in range(100):
        if rig.sub.state.last_seq == 4 and rig.doc("c") is not None:
            break
        await asyncio.sleep(0)
    assert rig.doc("a") == config("a", v=1) and rig.doc("big") == config("big", v="fresh")
    follow.cancel()
    await asyncio.gather(follow, return_exceptions=True)


async def test_a_signed_batch_is_applied_and_a_tampered_one_rejected() -> None:
    """With an HMAC key a signed batch applies; one change altered, the batch is refused."""
    rig = await Rig(seq=0, hmac_key=KEY).started()
    raw = encode_batch([upsert(1, "a", v=1), upsert(2, "b", v=1)], hmac_key=KEY)
    rig.feed.push(raw.replace(b'"v":1}', b'"v":9}', 1))
    assert await rig.sub.follow() == "bad_message"
    assert rig.sub.state.rejected["bad_signature"] == 1 and rig.doc("a") is None
    rig.feed.push(raw)
    assert await rig.sub.follow() == "silent"
    assert rig.doc("a") == config("a", v=1) and rig.doc("b") == config("b", v=1)


async def test_a_replayed_batch_is_a_duplicate_and_a_forged_one_over_its_seqs_a_conflict() -> None:
    """The same batch again changes nothing; another body over its seqs resyncs."""
    rig = await Rig(seq=0).started()
    push_batch(rig, upsert(1, "a", v=1), upsert(2, "b", v=1))
    push_batch(rig, upsert(1, "a", v=1), upsert(2, "b", v=1))
    assert await rig.sub.follow() == "silent"
    assert rig.sub.state.duplicates == 2
    push_batch(rig, upsert(2, "b", v="forged"), upsert(3, "c"))
    assert await rig.sub.follow() == "seq_conflict"
    assert rig.doc("b") == config("b", v=1)


async def test_the_collector_is_held_off_while_a_message_is_applied_and_restored_after() -> None:
    """No garbage collection starts inside a batch's apply; the collector is back on after."""
    import gc

    rig = await Rig(seq=0).started()
    seen: list[bool] = []
    original = rig.sub.applier._apply_one

    def apply_one(*args):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        original(*args)

    rig.sub.applier._apply_one = apply_one  # type: ignore[method-assign]
    push_batch(rig, upsert(1, "a", v=1), upsert(2, "b", v=1))
    push_batch(rig, upsert(4, "c", v=1), upsert(5, "d", v=1))  # a gap: raises inside
    assert gc.isenabled()
    assert await rig.sub.follow() == "gap"
    assert seen == [False, False] and gc.isenabled()


async def test_a_subscriber_with_a_backlog_leaves_other_tasks_a_turn_between_messages() -> None:
    """A feed that hands out buffered messages without suspending cannot starve lookups."""
    from tests.unit.service.fakes import ScriptedFeed

    class BufferedFeed(ScriptedFeed):
        async def receive(self, wait_s: float) -> bytes | str | None:
            if self.items:  # already buffered: returned without suspending, as redis-py does
                item = self.items.popleft()
                assert not isinstance(item, Exception)
                return item
            return await super().receive(wait_s)

    rig = Rig(seq=0)
    rig.sub._feed = rig.feed = BufferedFeed(rig.clock, seq=0, epoch=1)
    await rig.sub.sync(None)
    for n in range(20):
        push_batch(rig, upsert(2 * n + 1, f"a{n}"), upsert(2 * n + 2, f"b{n}"))
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    bystander = asyncio.create_task(other())
    await asyncio.sleep(0)
    start = turns
    follow = asyncio.create_task(rig.sub.follow())
    for _ in range(10_000):
        if rig.sub.state.last_seq == 40:
            break
        await asyncio.sleep(0)
    assert rig.sub.state.last_seq == 40
    assert turns - start >= 19  # a turn between messages, not only after the backlog
    for task in (follow, bystander):
        task.cancel()
    await asyncio.gather(follow, bystander, return_exceptions=True)
