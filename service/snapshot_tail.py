"""Messages that were published before a reload's starting point but arrive after it.

Why a module of its own: the start-up protocol (DESIGN.md rule 2) subscribes, then reads
``S0 = {ns}:seq`` on the *primary*, then loads MongoDB. When the subscription is on a Redis
*replica* (``SCC_REDIS_SUBSCRIBE_URL``), PUBLISH reaches it through replication, later than
the primary executed it. The protocol stays correct under that lag, because:

1. **Nothing after S0 is missed.** The fenced script INCRs ``{ns}:seq`` and PUBLISHes in
   one atomic step, so every message with ``seq > S0`` is executed on the primary *after*
   the MGET that read S0, which is after our SUBSCRIBE was confirmed by the replica. The
   replica replays the primary's commands in order and cannot execute a PUBLISH before the
   primary did, so it executes every such PUBLISH after our subscription exists there: it
   is delivered, only late. (A broken replication link or a move to another node is a
   resubscription, and a loss there shows up as a gap or a heartbeat ahead -> reload.)
2. **Everything up to S0 is in the load.** A message is published only after its change
   committed in MongoDB, and the load is a majority read that starts after S0 was read,
   so every change with ``seq <= S0`` is in the snapshot -- lag on the replica changes
   nothing about that.
3. **But the tail arrives late.** Messages with ``seq <= S0`` still in flight to the
   replica may reach us *after* the load was swapped in. A change among them is a plain
   duplicate; a heartbeat among them (``seq < S0``) would look like a counter that went
   back (``seq_reset``), and one of a previous leader's term or epoch like a reset
   (``term_reset`` / ``epoch_backwards``) -- reloads no loss called for.

:class:`SnapshotTail` tells those apart: after a load at S0 in term T, a heartbeat with
``seq < S0`` and a change of another term with ``seq <= S0`` are *covered by the load* --
ignored and counted (a change of term T at or below S0 stays a duplicate, or a conflict)
-- until the stream shows it has caught up: the first message after S0, or a heartbeat of
term T at S0 (in the primary's order every later message has ``seq >= S0`` unless Redis
lost writes, which the normal rules then catch), or :attr:`SnapshotTail.window_s` after
the load (three heartbeat intervals, the point at which a silent stream is inactive
anyway). Past the window the normal rules apply again, so a lag longer than that costs at
worst one unneeded reload, never a missed change.

A **resubscription** opens a new tail at the position the cache reflects then: the new
connection may be on a replica that lags more than the old one did, so it can deliver,
after our SUBSCRIBE, messages we already had. What it cannot do is skip one: whatever is
published after the resubscription, and was not delivered before it, arrives or is a gap.

What the tail gives up: if Redis lost writes (a failover) *inside* the window and the
counter climbed back past S0 before a heartbeat showed it, the changes between are taken
for covered ones; outside a reload's first heartbeat intervals the normal rules judge
every message, and the same loss inside a load was never caught either.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import Message


@dataclass(slots=True)
class SnapshotTail:
    """The open tail after one load: its starting point and until when it may last."""

    s0: int
    term: str | None
    opened_at: float
    window_s: float
    #: Messages ignored as covered by the load.
    covered: int = 0
    closed: bool = False

    def covers(self, message: Message, now: float) -> bool:
        """True if ``message`` was published before the load's starting point (ignore it)."""
        if self.closed:
            return False
        if now - self.opened_at > self.window_s:
            self.closed = True
            return False
        if message.seq > self.s0:
            self.closed = True  # the stream has caught up with the starting point
            return False
        if message.seq == self.s0 and message.kind == "heartbeat":
            if self.term is None or message.term == self.term:
                self.closed = True  # a heartbeat confirming the starting point itself
            return False  # (another term's heartbeat at S0: the normal rules judge it)
        if message.kind != "heartbeat" and (self.term is None or message.term == self.term):
            return False  # a duplicate of this term: the normal rules say so (or a conflict)
        self.covered += 1
        return True

    def close(self) -> None:
        """End the tail (a resubscription: the new connection carries no old messages)."""
        self.closed = True
