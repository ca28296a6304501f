"""What a replica does with each message: apply, ignore as a duplicate, or reload -- and why.

Why a module of its own: this is the whole of the replica's correctness argument, so it is
one pure function of (sequencing state, message) that property tests drive over generated
histories (resets, replays, conflicts, failovers); :mod:`service.subscribing` around it
only does I/O.

The state is the :class:`Position` the cache is known to reflect: the leader term id and
epoch of the last message taken, and its seq. The rules, in order:

1. **Epoch backwards** (a lower epoch than ours): Redis lost its data -> reload.
2. **Same term** (or the term is not known yet, right after a load): seq is a gap-free
   counter. ``seq = ours + 1`` is applied; ``seq > ours + 1`` is a ``gap``; ``seq <=
   ours`` is a duplicate -- unless we applied a *different* body under that seq, which is a
   ``seq_conflict`` (a replayed or forged message took the seq of a genuine one). A
   heartbeat ahead of us is ``heartbeat_ahead``; one *behind* us means the counter went
   back (``seq_reset``: Redis lost its last writes).
3. **Another term**: a new leader that continues our sequence (its first change has
   ``seq = ours + 1``, its heartbeat ``seq = ours``) is *bridged*: nothing was lost, no
   reload (a leader failover costs no reload). A new term whose seq is at or below ours
   has reset the counter (``term_reset``); one beyond ``ours + 1`` is a ``gap``.

A batch message (:mod:`shared.batches`) covers the seqs ``[a, b]`` and is judged as a
range by :func:`decide_batch`, with the same rules as if its changes had come one by
one: entirely at or below ours -> duplicate (or ``seq_conflict`` if a seq of it was
applied with another body); ``a = ours + 1`` -> apply all; ``a <= ours < b`` in the same
term -> apply only the part above ours (``Decision.skip`` says how many to leave out);
``a > ours + 1`` -> ``gap``; another term with ``a <= ours`` -> ``term_reset``. Each seq
of a batch is remembered with the digest of the whole message, so the same message
again is a duplicate and any other one claiming one of its seqs is a conflict.

Silence, a reconnect or a resubscription are *not* reasons here: they prove nothing was
lost, and the next message or heartbeat (which carries the current seq) proves or
disproves it. A duplicate is only a duplicate within one term.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from shared.batches import Batch
from shared.messages import Message

#: How many recent (seq -> body digest) pairs a replica remembers to tell a duplicate from
#: a conflict. A replay older than this window is taken for a plain duplicate.
DIGEST_WINDOW: Final = 1024


class Verdict(enum.Enum):
    """What to do with one message."""

    APPLY = "apply"  # the next change (or resync) in sequence: apply it, advance
    CONFIRM = "confirm"  # a heartbeat that confirms our position: the cache is current
    DUPLICATE = "duplicate"  # already applied (same term, same body): ignore
    RESYNC = "resync"  # the cache can no longer be trusted: reload (``reason``)


@dataclass(frozen=True, slots=True)
class Position:
    """The last message the cache reflects: term id (None = not known yet), epoch, seq."""

    seq: int = 0
    epoch: int | None = None
    term: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A :class:`Verdict`, with the resync reason and a human detail when reloading."""

    verdict: Verdict
    reason: str | None = None
    detail: str = ""
    #: For a batch to apply: how many of its first changes we already hold (duplicates).
    skip: int = 0


_CONFIRM: Final = Decision(Verdict.CONFIRM)
_APPLY: Final = Decision(Verdict.APPLY)
_DUPLICATE: Final = Decision(Verdict.DUPLICATE)


def _resync(reason: str, detail: str) -> Decision:
    return Decision(Verdict.RESYNC, reason, detail)


def digest(raw: bytes | str) -> bytes:
    """A short digest of a message body, to tell a genuine duplicate from a conflict."""
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.blake2b(data, digest_size=16).digest()


def decide(
    pos: Position,
    message: Message,
    body_digest: bytes | None = None,
    applied: OrderedDict[int, bytes] | None = None,
) -> Decision:
    """The verdict for ``message`` at ``pos`` (see the module docstring). Pure.

    ``applied`` maps recent seqs of the current term to the digest of the body applied
    under them; with ``body_digest`` it tells a duplicate from a ``seq_conflict``.
    """
    if pos.epoch is not None and message.epoch < pos.epoch:
        return _resync("epoch_backwards", f"epoch {message.epoch} < {pos.epoch}")
    same_term = pos.term is None or message.term == pos.term
    seq, ours = message.seq, pos.seq
    if message.kind == "heartbeat":
        if seq > ours:
            return _resync("heartbeat_ahead", f"heartbeat seq {seq} > {ours}")
        if seq == ours:
            return _CONFIRM
        if same_term:
            return _resync("seq_reset", f"heartbeat seq {seq} < {ours} in term {message.term}")
        return _resync("term_reset", f"term {message.term} at seq {seq} < {ours}")
    if seq == ours + 1:
        return _APPLY
    if seq > ours + 1:
        return _resync("gap", f"expected seq {ours + 1}, got {seq}")
    if not same_term:
        return _resync("term_reset", f"term {message.term} restarted at seq {seq} <= {ours}")
    if applied is not None and body_digest is not None:
        previous = applied.get(seq)
        if previous is not None and previous != body_digest:
            return _resync("seq_conflict", f"seq {seq} arrived again with a different body")
    return _DUPLICATE


def decide_batch(
    pos: Position,
    batch: Batch,
    body_digest: bytes | None = None,
    applied: OrderedDict[int, bytes] | None = None,
) -> Decision:
    """The verdict for the seq range of ``batch`` at ``pos`` (module docstring). Pure.

    Agrees with deciding its changes one by one, each at the position the previous left
    (pinned by a property test); a batch of one is exactly :func:`decide`.
    """
    head = batch.first
    if len(batch) == 1:
        return decide(pos, head, body_digest, applied)
    if pos.epoch is not None and head.epoch < pos.epoch:
        return _resync("epoch_backwards", f"epoch {head.epoch} < {pos.epoch}")
    first, last, ours = head.seq, batch.last.seq, pos.seq
    if first == ours + 1:
        return _APPLY
    if first > ours + 1:
        return _resync("gap", f"expected seq {ours + 1}, got {first}..{last}")
    if pos.term is not None and head.term != pos.term:
        return _resync("term_reset", f"term {head.term} restarted at seq {first} <= {ours}")
    if applied is not None and body_digest is not None:
        for seq in range(first, min(last, ours) + 1):
            previous = applied.get(seq)
            if previous is not None and previous != body_digest:
                return _resync("seq_conflict", f"seq {seq} arrived again with a different body")
    if last <= ours:
        return _DUPLICATE
    return Decision(Verdict.APPLY, skip=ours - first + 1)


def advance(pos: Position, message: Message) -> Position:
    """The position after ``message`` was applied or confirmed (adopts its term)."""
    epoch = message.epoch if pos.epoch is None else max(pos.epoch, message.epoch)
    return Position(seq=max(pos.seq, message.seq), epoch=epoch, term=message.term)


class Sequencer:
    """The mutable wrapper the subscriber holds: position + recent digests of this term."""

    __slots__ = ("applied", "position")

    def __init__(self, position: Position | None = None) -> None:
        self.position = position or Position()
        self.applied: OrderedDict[int, bytes] = OrderedDict()

    def reset(self, position: Position) -> None:
        """Start over at ``position`` (after a reload)."""
        self.position = position
        self.applied.clear()

    def decide(self, message: Message, body_digest: bytes | None = None) -> Decision:
        """:func:`decide` at the current position."""
        return decide(self.position, message, body_digest, self.applied)

    def decide_batch(self, batch: Batch, body_digest: bytes | None = None) -> Decision:
        """:func:`decide_batch` at the current position."""
        return decide_batch(self.position, batch, body_digest, self.applied)

    def take_batch(self, batch: Batch, body_digest: bytes | None, skip: int = 0) -> None:
        """Record the changes of ``batch`` after the first ``skip`` as applied."""
        for message in batch.changes[skip:]:
            self.take(message, body_digest)

    def take(self, message: Message, body_digest: bytes | None = None) -> None:
        """Record ``message`` as applied (or confirmed): advance, remember its digest."""
        if self.position.term is not None and message.term != self.position.term:
            self.applied.clear()  # a new term: its seqs are its own
        self.position = advance(self.position, message)
        if body_digest is not None and message.kind != "heartbeat":
            self.applied[message.seq] = body_digest
            while len(self.applied) > DIGEST_WINDOW:
                self.applied.popitem(last=False)
