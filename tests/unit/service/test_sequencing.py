"""The replica's per-message rules (service.sequencing), over generated message histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from service.sequencing import (
    Decision,
    Position,
    Sequencer,
    Verdict,
    decide,
    decide_batch,
    digest,
)
from shared.batches import Batch
from shared.messages import Message


def change(seq: int, term: str = "A", epoch: int = 1, key: str = "k", v: int = 0) -> Message:
    return Message(
        kind="upsert", seq=seq, epoch=epoch, term=term, key=key, doc={"source_id": key, "v": v}
    )


def beat(seq: int, term: str = "A", epoch: int = 1) -> Message:
    return Message(kind="heartbeat", seq=seq, epoch=epoch, term=term)


def test_next_seq_applies_and_duplicates_within_a_term_are_ignored() -> None:
    """seq = ours + 1 is applied; seq <= ours in the same term is a duplicate."""
    pos = Position(seq=5, epoch=1, term="A")
    assert decide(pos, change(6)).verdict is Verdict.APPLY
    assert decide(pos, change(5)).verdict is Verdict.DUPLICATE
    assert decide(pos, change(1)).verdict is Verdict.DUPLICATE
    assert decide(pos, beat(5)).verdict is Verdict.CONFIRM


def test_a_gap_and_a_heartbeat_ahead_resync() -> None:
    """A skipped seq, or a heartbeat carrying a seq we never got, proves a loss."""
    pos = Position(seq=5, epoch=1, term="A")
    assert decide(pos, change(7)).reason == "gap"
    assert decide(pos, beat(6)).reason == "heartbeat_ahead"
    assert decide(pos, change(7, term="B", epoch=2)).reason == "gap"


def test_a_counter_set_back_within_a_term_is_a_reset() -> None:
    """Redis lost its last writes: a heartbeat below our seq in the same term resyncs."""
    pos = Position(seq=12, epoch=1, term="A")
    assert decide(pos, beat(4)).reason == "seq_reset"


def test_a_new_term_below_our_seq_is_a_reset_even_with_the_same_epoch() -> None:
    """An epoch issued twice is told apart by the term id: no change is taken as a duplicate."""
    pos = Position(seq=12, epoch=3, term="A")
    assert decide(pos, change(9, term="B", epoch=3)).reason == "term_reset"
    assert decide(pos, change(12, term="B", epoch=3)).reason == "term_reset"
    assert decide(pos, beat(7, term="B", epoch=3)).reason == "term_reset"


def test_a_new_term_that_continues_the_sequence_is_bridged() -> None:
    """A failover whose new leader continues our seq costs no reload."""
    pos = Position(seq=12, epoch=3, term="A")
    assert decide(pos, beat(12, term="B", epoch=4)).verdict is Verdict.CONFIRM
    assert decide(pos, change(13, term="B", epoch=4)).verdict is Verdict.APPLY


def test_epoch_backwards_resyncs() -> None:
    """A lower epoch than ours means Redis lost its data."""
    pos = Position(seq=100, epoch=3, term="A")
    assert decide(pos, change(1, term="Z", epoch=1)).reason == "epoch_backwards"


def test_the_same_seq_with_another_body_is_a_conflict() -> None:
    """A replayed or forged message took a genuine message's seq: the genuine one resyncs."""
    seq = Sequencer(Position(seq=4, epoch=1, term="A"))
    forged = change(5, v=666)
    assert seq.decide(forged, digest(b"forged")).verdict is Verdict.APPLY
    seq.take(forged, digest(b"forged"))
    assert seq.decide(change(5, v=1), digest(b"genuine")).reason == "seq_conflict"
    assert seq.decide(forged, digest(b"forged")).verdict is Verdict.DUPLICATE


def test_a_term_change_forgets_the_digests_of_the_old_term() -> None:
    """Seqs are per term: digests of an earlier term do not make conflicts in a new one."""
    seq = Sequencer(Position(seq=0, epoch=1, term="A"))
    seq.take(change(1), digest(b"one"))
    seq.take(change(2, term="B", epoch=2), digest(b"two"))
    assert seq.applied == {2: digest(b"two")}


@dataclass
class _History:
    """A publisher history: (message, lost on the way to the replica?) in order."""

    events: list[tuple[Message, bool]]
    lost_any: bool


@st.composite
def histories(draw: st.DrawFn) -> _History:
    """A genuine publisher: gap-free seq across terms (failovers), heartbeats, some losses."""
    seq, epoch, term_n = 0, 1, 0
    events: list[tuple[Message, bool]] = []
    lost_any = False
    for _ in range(draw(st.integers(1, 40))):
        action = draw(st.sampled_from(["change", "change", "beat", "failover"]))
        if action == "failover":
            epoch, term_n = epoch + 1, term_n + 1
            continue
        term = f"T{term_n}"
        lost = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        if action == "change":
            seq += 1
            msg = change(seq, term=term, epoch=epoch, v=seq)
        else:
            msg = beat(seq, term=term, epoch=epoch)
        lost_any = lost_any or (lost and action == "change")
        events.append((msg, lost))
    # The publisher ends with a heartbeat, which no replica misses for long.
    events.append((beat(seq, term=f"T{term_n}", epoch=epoch), False))
    return _History(events, lost_any)


def _replay(history: _History) -> tuple[bool, int]:
    """Feed the delivered messages to a replica; (reloaded?, seq applied when it stopped)."""
    seq = Sequencer(Position(seq=0, epoch=None, term=None))
    for message, lost in history.events:
        if lost:
            continue
        decision = seq.decide(message, digest(repr(message)))
        if decision.verdict is Verdict.RESYNC:
            return True, seq.position.seq
        if decision.verdict in (Verdict.APPLY, Verdict.CONFIRM):
            seq.take(message, digest(repr(message)))
    return False, seq.position.seq


@settings(max_examples=300, deadline=None)
@given(histories())
def test_a_lost_change_is_always_noticed_and_no_loss_never_reloads(history: _History) -> None:
    """Whatever the failovers: a lost change leads to a resync, and without one nothing does."""
    reloaded, _ = _replay(history)
    assert reloaded == history.lost_any


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 10))
def test_a_counter_reset_is_always_noticed(history: _History, back: int) -> None:
    """After the counter goes back (same term or an epoch issued twice), the replica resyncs."""
    replica = Sequencer(Position(seq=0, epoch=None, term=None))
    for message, _ in history.events:
        body = digest(repr(message))
        if replica.decide(message, body).verdict in (Verdict.APPLY, Verdict.CONFIRM):
            replica.take(message, body)
    top = replica.position
    reset_to = top.seq - back
    if reset_to < 0:
        return
    term, epoch = top.term or "", top.epoch or 1
    assert replica.decide(beat(reset_to, term=term, epoch=epoch)).reason == "seq_reset"
    again = change(reset_to + 1, term="other", epoch=epoch)
    assert replica.decide(again).reason in ("term_reset", "gap" if back == 0 else "term_reset")
    if reset_to + 1 <= top.seq and (reset_to + 1) in replica.applied:
        genuine_again = change(reset_to + 1, term=term, epoch=epoch, v=-1)
        assert replica.decide(genuine_again, digest(repr(genuine_again))).reason == "seq_conflict"


# --------------------------------------------------------------------------- batches


def batch_of(first: int, n: int, term: str = "A", epoch: int = 1, v: int = 0) -> Batch:
    return Batch(tuple(change(first + i, term=term, epoch=epoch, v=v) for i in range(n)))


def test_a_batch_is_judged_as_a_range() -> None:
    """Old entirely: duplicate; next: apply all; overlapping: apply the part above; beyond: gap."""
    pos = Position(seq=10, epoch=1, term="A")
    assert decide_batch(pos, batch_of(11, 5)) == Decision(Verdict.APPLY, skip=0)
    assert decide_batch(pos, batch_of(6, 5)).verdict is Verdict.DUPLICATE
    assert decide_batch(pos, batch_of(1, 3)).verdict is Verdict.DUPLICATE
    assert decide_batch(pos, batch_of(8, 5)) == Decision(Verdict.APPLY, skip=3)
    assert decide_batch(pos, batch_of(10, 2)) == Decision(Verdict.APPLY, skip=1)
    gap = decide_batch(pos, batch_of(12, 3))
    assert (gap.verdict, gap.reason) == (Verdict.RESYNC, "gap")


def test_a_batch_of_a_new_term_is_bridged_or_a_reset_like_a_single_change() -> None:
    """Continuing our seq, a new term's batch applies; starting at or below it, it resets."""
    pos = Position(seq=10, epoch=1, term="A")
    assert decide_batch(pos, batch_of(11, 3, term="B", epoch=2)).verdict is Verdict.APPLY
    assert decide_batch(pos, batch_of(9, 3, term="B", epoch=2)).reason == "term_reset"
    assert decide_batch(pos, batch_of(1, 3, term="B", epoch=2)).reason == "term_reset"
    assert decide_batch(pos, batch_of(11, 3, term="Z", epoch=0)).reason == "epoch_backwards"


def test_a_batch_claiming_a_seq_applied_with_another_body_is_a_conflict() -> None:
    """The same batch again is a duplicate; another one over its seqs is a seq_conflict."""
    seq = Sequencer(Position(seq=4, epoch=1, term="A"))
    genuine = batch_of(5, 3)
    seq.take_batch(genuine, digest(b"genuine"))
    assert seq.position.seq == 7
    assert seq.decide_batch(genuine, digest(b"genuine")).verdict is Verdict.DUPLICATE
    assert seq.decide_batch(batch_of(6, 4), digest(b"other")).reason == "seq_conflict"
    assert seq.decide(change(6), digest(b"single")).reason == "seq_conflict"


def _fold(pos: Position, batch: Batch, body: bytes) -> tuple[str, int, Position]:
    """Decide ``batch`` change by change; (outcome, changes applied, final position)."""
    seq = Sequencer(pos)
    applied = 0
    for message in batch.changes:
        d = seq.decide(message, body)
        if d.verdict is Verdict.RESYNC:
            return f"resync:{d.reason}", 0, pos
        if d.verdict is Verdict.APPLY:
            seq.take(message, body)
            applied += 1
    return ("apply" if applied else "duplicate"), applied, seq.position


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 20),
    st.sampled_from(["A", "B", None]),
    st.integers(1, 3),
    st.integers(1, 25),
    st.integers(1, 8),
    st.sampled_from(["A", "B"]),
    st.integers(1, 3),
)
def test_deciding_a_batch_agrees_with_deciding_its_changes_one_by_one(
    ours: int, our_term: str | None, our_epoch: int, first: int, n: int, term: str, epoch: int
) -> None:
    """A batch's range verdict equals the fold of the per-message rules over its changes."""
    pos = Position(seq=ours, epoch=our_epoch if our_term else None, term=our_term)
    batch = batch_of(first, n, term=term, epoch=epoch)
    outcome, applied, end = _fold(pos, batch, digest(b"b"))
    seq = Sequencer(pos)
    d = seq.decide_batch(batch, digest(b"b"))
    if d.verdict is Verdict.RESYNC:
        assert outcome == f"resync:{d.reason}"
        return
    assert outcome == d.verdict.value
    if d.verdict is Verdict.APPLY:
        seq.take_batch(batch, digest(b"b"), d.skip)
        assert (n - d.skip, seq.position) == (applied, end)


@st.composite
def batched_histories(draw: st.DrawFn) -> _History:
    """Like :func:`histories`, with changes grouped into batches (a loss loses a whole one)."""
    seq, epoch, term_n = 0, 1, 0
    events: list[tuple[Batch, bool]] = []
    lost_any = False
    for _ in range(draw(st.integers(1, 30))):
        action = draw(st.sampled_from(["batch", "batch", "beat", "failover"]))
        if action == "failover":
            epoch, term_n = epoch + 1, term_n + 1
            continue
        term = f"T{term_n}"
        lost = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        if action == "batch":
            n = draw(st.integers(1, 6))
            events.append((batch_of(seq + 1, n, term=term, epoch=epoch, v=seq), lost))
            seq += n
            lost_any = lost_any or lost
        else:
            events.append((Batch((beat(seq, term=term, epoch=epoch),)), lost))
        if not lost and draw(st.integers(0, 5)) == 0:  # delivered twice (a replay)
            events.append(events[-1])
    events.append((Batch((beat(seq, term=f"T{term_n}", epoch=epoch),)), False))
    return _History(events, lost_any)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(batched_histories())
def test_a_lost_batch_is_always_noticed_and_no_loss_never_reloads(history: _History) -> None:
    """With batches and replays: a lost batch leads to a resync, and without one nothing does."""
    seq = Sequencer(Position(seq=0, epoch=None, term=None))
    reloaded = False
    for item, lost in history.events:
        batch = cast(Batch, item)
        if lost:
            continue
        body = digest(repr(batch))
        d = seq.decide_batch(batch, body)
        if d.verdict is Verdict.RESYNC:
            reloaded = True
            break
        if d.verdict in (Verdict.APPLY, Verdict.CONFIRM):
            seq.take_batch(batch, body, d.skip)
    assert reloaded == history.lost_any
