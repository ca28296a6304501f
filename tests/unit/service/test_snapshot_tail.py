"""Late copies of messages from before a load's starting point are ignored, not read as a reset."""

from __future__ import annotations

from service.feed import CAUGHT_UP
from service.snapshot_tail import SnapshotTail
from shared.messages import encode
from tests.unit.service.fakes import config, heartbeat, upsert
from tests.unit.service.test_subscribing import Rig


def tail(s0: int = 7, term: str | None = "t") -> SnapshotTail:
    """A tail opened at ``s0`` in ``term`` at time 0 with a 3 s window."""
    return SnapshotTail(s0=s0, term=term, opened_at=0.0, window_s=3.0)


def test_a_heartbeat_below_the_start_and_an_older_terms_change_are_covered() -> None:
    """Inside the window a lagging heartbeat and a previous leader's change are covered."""
    t = tail()
    assert t.covers(heartbeat(5, term="t"), 1.0)
    assert t.covers(upsert(6, "a", term="old"), 1.0)
    assert t.covered == 2 and not t.closed


def test_a_change_of_the_same_term_stays_for_the_normal_rules() -> None:
    """A same-term change at or below S0 is left to the duplicate / conflict rules."""
    assert not tail().covers(upsert(7, "a", term="t"), 1.0)


def test_the_tail_ends_at_the_first_message_past_the_start_or_a_heartbeat_at_it() -> None:
    """After seq > S0, or a heartbeat of the same term at S0, nothing is covered any more."""
    t = tail()
    assert not t.covers(upsert(8, "a", term="t"), 1.0)
    assert t.closed and not t.covers(heartbeat(5, term="t"), 1.0)
    u = tail()
    assert not u.covers(heartbeat(7, term="t"), 1.0)
    assert u.closed
    v = tail()
    assert not v.covers(heartbeat(7, term="other"), 1.0)  # judged by the normal rules
    assert not v.closed


def test_the_window_bounds_the_tail() -> None:
    """Past window_s after the load a heartbeat below S0 is no longer covered."""
    t = tail()
    assert not t.covers(heartbeat(5, term="t"), 3.5)
    assert t.closed


async def test_a_lagging_heartbeat_after_the_load_reloads_nothing() -> None:
    """A heartbeat below S0 arriving just after the load is covered, not a seq_reset."""
    rig = await Rig([config("a")], seq=7).started()
    rig.feed.push_messages(heartbeat(5), heartbeat(6), upsert(8, "b"), heartbeat(8))
    assert await rig.sub.follow() == "silent"
    assert rig.sub.state.tail_covered == 2
    assert rig.sub.state.last_seq == 8 and rig.doc("b") is not None
    assert rig.sub.state.resyncs["seq_reset"] == 0


async def test_after_the_marker_a_heartbeat_below_the_start_is_a_reset_again() -> None:
    """Once the feed says it caught up, a heartbeat below S0 proves a reset."""
    rig = await Rig([config("a")], seq=7).started()
    rig.feed.push(CAUGHT_UP, encode(heartbeat(5)))
    assert await rig.sub.follow() == "seq_reset"


async def test_a_marker_is_never_taken_for_a_bad_message() -> None:
    """CAUGHT_UP during the load, while a reload is deferred and while following is no message."""
    rig = Rig([config("a")], seq=3)
    rig.store.on_load = lambda: rig.feed.push(CAUGHT_UP)
    await rig.sub.sync(None)
    rig.feed.push(CAUGHT_UP)
    await rig.sub._pace("broadcast")
    rig.feed.push(CAUGHT_UP)
    assert await rig.sub.follow() == "silent"
    assert sum(rig.sub.state.rejected.values()) == 0
