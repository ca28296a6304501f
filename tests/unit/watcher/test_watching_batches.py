"""The follower's batches: one message per change-stream batch, never a wait, tokens after."""

from __future__ import annotations

import orjson

from shared.batches import decode_batch
from tests.unit.watcher.fakes import position, token
from tests.unit.watcher.test_watching import eventually, following, rig


async def test_a_burst_already_held_by_the_stream_goes_out_as_few_messages() -> None:
    """Changes of one server reply share messages (bounded), with gap-free seqs."""
    r = rig(batch=10)
    r.tokens.set(token(0))
    for n in range(25):
        r.source.insert(n, f"k{n}")
    async with following(r):
        await eventually(lambda: bool(r.tokens.saves) and position(r.tokens.saves[-1]) == 25)
    assert [len(decode_batch(raw)) for raw in r.redis.published] == [10, 10, 5]
    assert [m.seq for m in r.messages()] == list(range(1, 26))
    assert [m.key for m in r.messages()] == [f"k{n}" for n in range(25)]
    assert r.stats.batches == 3


async def test_a_lone_change_on_a_quiet_stream_goes_out_at_once_as_a_single_message() -> None:
    """With nothing else buffered, a change is published right after it is read, as v: 1."""
    r = rig(batch=1000)
    r.source.await_s = 0.05
    async with following(r):
        await eventually(lambda: len(r.tokens.saves) == 1)
        published_before = len(r.redis.published)
        # From now on a getMore that finds nothing waits 30 s: publishing within the
        # 3 s below proves the follower did not ask the server for more before sending.
        r.source.await_s = 30.0
        r.source.insert(1, "k1")
        await eventually(lambda: len(r.redis.published) > published_before, within=3.0)
    raw = r.redis.published[published_before]
    assert orjson.loads(raw)["v"] == 1
    assert decode_batch(raw).first.key == "k1"


async def test_the_changes_before_a_stream_ending_event_in_a_batch_are_published() -> None:
    """A ``drop`` inside a drained batch: what came before it goes out, then the resync."""
    r = rig(batch=100)
    r.tokens.set(token(0))
    r.source.insert(1, "k1")
    r.source.insert(2, "k2")
    r.source.drop()
    async with following(r):
        await eventually(lambda: len(r.source.opened) == 2)
        await eventually(lambda: any(m.reason == "drop" for m in r.messages()))
    assert r.keys_published() == [("upsert", "k1"), ("upsert", "k2"), ("resync", None)]
    assert [m.seq for m in r.messages()] == [1, 2, 3]


async def test_the_token_saved_after_a_batch_is_the_one_after_its_last_change() -> None:
    """Saves never point inside a published batch nor past it."""
    r = rig(batch=4, save_interval_ms=60_000)
    r.tokens.set(token(0))
    for n in range(6):
        r.source.insert(n, f"k{n}")
    async with following(r):
        await eventually(lambda: bool(r.tokens.saves) and position(r.tokens.saves[-1]) == 6)
    saved = [position(t) for t in r.tokens.saves]
    assert set(saved) <= {4, 6} and saved[-1] == 6  # batch ends: after k3, after k5
