"""Scenario 9: Redis loses its last writes -- ``{ns}:seq`` set back, then an epoch issued twice.

What it models: a Sentinel or managed-Redis failover to a replica that had not received
the last writes, or ``{ns}:seq`` evicted alone. Both happen while the writer runs:

1. ``DECRBY {ns}:seq 8`` under the live leader, then five probe configs updated (the
   writer held meanwhile): the next messages of the *same* epoch carry seqs that
   replicas have already seen. A replica that takes them for duplicates drops real
   changes and keeps old versions indefinitely (the probes are never touched again by
   the writer, so its churn cannot hide that).
2. the leader is SIGKILLed and, before its lease runs out, ``{ns}:epoch`` is set back by
   one and ``{ns}:seq`` back by 8 (the promoted Redis lost the last ``INCR`` of both):
   the successor is issued the *same* epoch number as the dead leader and continues
   from a seq the replicas have passed; the probes are updated again meanwhile.

Its own invariants: after step 1 the live leader puts the counter back to its term's last
seq on its next publish (so replicas see the sequence continue and nothing reloads:
the probes' updates must still reach them, which the staleness reader checks); after
step 2 every replica notices the new term restarted at or below its seq and reloads (its
resync counter moves within a few seconds); and the successor of step 2 really got the
re-issued epoch (otherwise the harness did not inject what it says).
The shared checks do the rest: no stale read past the staleness bound, no answer going
back in time, and every replica equal to the collection at the end.
"""

from __future__ import annotations

import time

from tests.chaos.rig import Rig

NAME = "redis-tail-loss"
TITLE = "9. Redis loses its last writes: seq set back in one epoch; an epoch issued twice"
#: How far the harness sets ``{ns}:seq`` back (the issue's reproduction).
SEQ_LOSS = 8
#: How long a replica has to notice and reload (a wait, not a speed assertion).
NOTICE_S = 10.0
#: Configs updated right after each injection (the issue's reproduction updated five).
PROBES = tuple(f"tail-probe-{i}" for i in range(5))


def run(rig: Rig) -> None:
    """Set seq back under the live leader, then re-issue an epoch to the other watcher."""
    assert rig.writer is not None
    _, epoch = rig.wait_leader()
    for key in PROBES:
        rig.write_probe(key)
    time.sleep(rig.profile.burst_s)
    before = _resync_totals(rig)
    with rig.writer.hold():
        rig.seq_breaks.append(time.monotonic())
        seq = rig.redis.decrby(rig.keys.seq, SEQ_LOSS)
        for key in PROBES:
            rig.write_probe(key)
    rig.note("seq_set_back_to", seq)
    rig.check(
        _restored(rig, above=seq + SEQ_LOSS),
        f"{{ns}}:seq set back {SEQ_LOSS} within epoch {epoch} was not put back by the leader",
    )
    rig.note("reloads_after_seq_set_back", sum(_resync_totals(rig).values()) - sum(before.values()))
    time.sleep(rig.profile.burst_s)

    leader, epoch = rig.wait_leader()
    before = _resync_totals(rig)
    rig.watcher(leader).stop(kill=True)
    rig.seq_breaks.append(time.monotonic())
    with rig.redis.pipeline(transaction=True) as pipe:
        pipe.decr(rig.keys.epoch)
        pipe.decrby(rig.keys.seq, SEQ_LOSS)
        pipe.execute()
    for key in PROBES:
        rig.write_probe(key)
    successor, new_epoch = rig.wait_leader(above_epoch=epoch - 1)
    rig.note("reissued_epoch", f"{leader} and {successor} both got epoch {new_epoch}")
    rig.check(
        successor != leader and new_epoch == epoch,
        f"harness: expected the other watcher to be issued epoch {epoch} again, "
        f"got {successor} with epoch {new_epoch}",
    )
    _all_resynced(rig, before, f"epoch {epoch} re-issued with seq set back {SEQ_LOSS}")
    rig.watcher(leader).start()
    time.sleep(rig.profile.burst_s)


def _restored(rig: Rig, *, above: int) -> bool:
    """Whether ``{ns}:seq`` passed ``above`` within :data:`NOTICE_S` (the counter continued)."""
    deadline = time.monotonic() + NOTICE_S
    while time.monotonic() < deadline:
        if int(rig.redis.get(rig.keys.seq) or 0) > above:
            return True
        time.sleep(0.05)
    return False


def _resync_totals(rig: Rig) -> dict[str, int]:
    return {name: sum(rig.resyncs(name).values()) for name in rig.fleet.replicas}


def _all_resynced(rig: Rig, before: dict[str, int], what: str) -> None:
    deadline = time.monotonic() + NOTICE_S
    pending = set(before)
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending if sum(rig.resyncs(n).values()) <= before[n]}
        time.sleep(0.1)
    rig.check(not pending, f"{sorted(pending)} never reloaded after {what}")
