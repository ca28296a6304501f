"""Late copies of messages from before a load's starting point are ignored, not read as a reset."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.feed import CAUGHT_UP
from service.sequencing import Position, Sequencer, Verdict, digest
from service.snapshot_tail import SnapshotTail
from shared.messages import Message, encode
from tests.unit.service.fakes import config, heartbeat, upsert
from tests.unit.service.test_subscribing import Rig


def tail(s0: int = 7, term: str | None = "t") -> SnapshotTail:
    """A tail opened at ``s0`` in ``term``, epoch 2, at time 0 with a 3 s window."""
    return SnapshotTail(s0=s0, term=term, epoch=2, opened_at=0.0, window_s=3.0)


def test_a_heartbeat_below_the_start_and_an_older_terms_change_are_covered() -> None:
    """Inside the window a lagging heartbeat and a previous leader's change are covered."""
    t = tail()
    assert t.covers(heartbeat(5, term="t"), 1.0)
    assert t.covers(upsert(6, "a", epoch=1, term="old"), 1.0)
    assert t.covers(heartbeat(7, epoch=1, term="old"), 1.0)
    assert t.covered == 3 and not t.closed


def test_a_newer_leader_below_the_start_is_left_to_the_reset_rules() -> None:
    """A term with a higher epoch than S0's restarting below S0 is not covered (a reset)."""
    t = tail()
    assert not t.covers(upsert(3, "a", epoch=3, term="new"), 1.0)
    assert not t.covers(heartbeat(3, epoch=3, term="new"), 1.0)


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
    assert not v.covers(heartbeat(7, epoch=3, term="new"), 1.0)  # bridged by the normal rules
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


@st.composite
def lagged_starts(draw: st.DrawFn) -> tuple[list[Message], int, int, int, Position]:
    """A primary's publish history, a subscribe point, the S0 read and the load's end.

    Steps: a change (next seq), a heartbeat (current seq) or a leader change (new term,
    next epoch, continuing the seq); the subscription hears from ``sub`` on, S0 is read
    after ``cut`` messages (with the term and epoch Redis holds then), and the messages the
    subscription hears arrive in order, those before ``end`` during the load and the rest
    after the swap -- anywhere relative to the S0 read, as lag allows.
    """
    steps = draw(st.lists(st.sampled_from(["change", "beat", "leader"]), min_size=1, max_size=40))
    history: list[Message] = []
    seq, epoch, term = 0, 1, "t1"
    cut = draw(st.integers(0, len(steps)))
    position = Position(seq=0, epoch=1, term="t1")
    for i, step in enumerate(steps):
        if i == cut:
            position = Position(seq=seq, epoch=epoch, term=term)
        if step == "leader":
            epoch, term = epoch + 1, f"t{epoch + 1}"
            continue
        if step == "change":
            seq += 1
            history.append(upsert(seq, f"k{seq % 5}", epoch, term=term, v=seq))
        else:
            history.append(heartbeat(seq, epoch, term=term))
    if cut == len(steps):
        position = Position(seq=seq, epoch=epoch, term=term)
    published_before_cut = sum(1 for s in steps[:cut] if s != "leader")
    sub = draw(st.integers(0, published_before_cut))
    end = draw(st.integers(sub, len(history)))  # lag: the load may end before any arrives
    return history, sub, published_before_cut, end, position


@given(lagged_starts())
@settings(max_examples=400, deadline=None)
def test_a_lagging_subscription_applies_every_change_after_s0_once_and_reloads_nothing(
    start: tuple[list[Message], int, int, int, Position],
) -> None:
    """Over any history, subscribe point, S0 and lag: no reload, each change > S0 applied once."""
    history, sub, _cut, end, s0 = start
    seq = Sequencer()
    seq.reset(s0)
    t = SnapshotTail(s0=s0.seq, term=s0.term, epoch=s0.epoch, opened_at=0.0, window_s=3.0)
    applied: list[int] = []
    for i, message in enumerate(history[sub:], start=sub):
        if i < end and message.seq <= s0.seq:
            continue  # buffered during the load and already in it (sync skips these)
        if t.covers(message, 1.0):
            continue
        decision = seq.decide(message, digest(encode(message)))
        assert decision.verdict is not Verdict.RESYNC, (decision, message, s0)
        if decision.verdict in (Verdict.APPLY, Verdict.CONFIRM):
            seq.take(message, digest(encode(message)))
            if decision.verdict is Verdict.APPLY:
                applied.append(message.seq)
    changes = [m.seq for m in history if m.kind == "upsert" and m.seq > s0.seq]
    assert applied == changes
