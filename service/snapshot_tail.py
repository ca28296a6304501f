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

:class:`SnapshotTail` tells those apart: after a load at S0 in term T and epoch E, a
heartbeat of term T with ``seq < S0`` and any message of an *older* leader (another term,
a lower epoch) at or below S0 are *covered by the load* -- ignored and counted. A change
of term T at or below S0 stays a duplicate (or a conflict), and a message of a leader
*newer* than E below S0 stays a reset: only leaders from before the read can be late.

The tail ends when the stream shows it has caught up: exactly, when the feed's catch-up
marker arrives (:data:`~service.feed.CAUGHT_UP`: published on the primary right after the
S0 read, so it follows every earlier PUBLISH through replication);
otherwise at the first message after S0, at a heartbeat of term T at S0, or at the
latest :attr:`SnapshotTail.window_s` after the swap (three heartbeat intervals, when a
silent stream turns inactive anyway). Past its end the normal rules judge every message,
so a lag beyond the window costs at worst one unneeded reload, never a missed change.

A **resubscription** opens a new tail at the position the cache reflects then (and the
subscriber publishes a new marker): the new connection may be on a replica that lags more
than the old one did, so it can deliver, after our SUBSCRIBE, messages we already had.
What it cannot do is skip one: whatever is published after the resubscription and was not
delivered before it arrives, or shows as a gap.

What the tail gives up: a reset (Redis lost writes) whose first heartbeat the primary runs
in the moment between the S0 read (or a new SUBSCRIBE) and the marker is seen one
heartbeat later; without any marker (a feed that sends none), a reset within the window
is seen when the window ends. A leader newer than the read is never covered, and a
change after S0 always ends the tail.
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
    #: The epoch Redis held with S0 (None: unknown); only older leaders can be late.
    epoch: int | None = None
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
        same_term = self.term is None or message.term == self.term
        if message.kind == "heartbeat" and message.seq == self.s0 and same_term:
            self.closed = True  # a heartbeat confirming the starting point itself
            return False
        if same_term and message.kind != "heartbeat":
            return False  # a duplicate of this term: the normal rules say so (or a conflict)
        if not same_term and not self._older_leader(message):
            return False  # a leader newer than S0 restarted below it: the normal rules
        self.covered += 1
        return True

    def _older_leader(self, message: Message) -> bool:
        return (
            self.epoch is None
            or message.epoch < self.epoch
            or (message.epoch == self.epoch and message.kind == "heartbeat")
        )

    def close(self) -> None:
        """End the tail (a resubscription: the new connection carries no old messages)."""
        self.closed = True
