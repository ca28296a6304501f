"""Scenario: the Redis primary is cut off from its replicas and sentinels, then healed.

Both replicas and all three sentinels are SIGSTOPped (they keep their sockets and answer
nothing) while clients still reach the primary; after a while they are resumed. No
failover can happen, and no *new* lease can be confirmed on the replicas (``WAIT``).
While they are frozen the leader watcher is SIGSTOPped past its lease, so its lease
lapses and the standby must try to take over: each of its acquisitions raises the epoch
in Redis but goes unconfirmed, is given back, and publishes nothing. Its own invariants:
the fleet keeps serving, no message of a newer term reaches the channel while the
replicas are frozen (an unconfirmed lease never speaks), a new term begins once they are
healed, and the shared checks hold.
"""

from __future__ import annotations

import signal
import time

from tests.chaos.profile import LEADER_TTL_MS
from tests.chaos.rig import Rig
from tests.chaos.sentinel_rig import SentinelRig

NAME = "sentinel-partition"
TITLE = "S3. Redis primary cut off from replicas and sentinels, then healed"
RIG = SentinelRig
#: How long the leader is paused: twice its lease, so the lease surely lapses meanwhile.
LAPSE_S = 2 * LEADER_TTL_MS / 1000


def run(rig: Rig) -> None:
    """Freeze every replica and sentinel, lapse the leader's lease meanwhile, then heal."""
    assert isinstance(rig, SentinelRig) and rig.observer is not None
    leader, epoch = rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    primary = rig.group.primary
    frozen = [n for n in rig.group.data if n is not primary] + list(rig.group.sentinels)
    since = rig.observer.count()
    paused = rig.watcher(leader)
    for node in frozen:
        node.pause()
    try:
        paused.signal(signal.SIGSTOP)
        try:
            time.sleep(LAPSE_S)
        finally:
            paused.signal(signal.SIGCONT)
        time.sleep(rig.profile.burst_s)
        _, during = rig.leader()
        newer = [m for m in rig.observer.snapshot()[since:] if (m.epoch or 0) > epoch]
    finally:
        for node in frozen:
            node.resume()
    rig.note("epoch_before_during", f"{epoch} -> {during}")
    rig.check(during > epoch, "the standby never tried to take the lapsed lease (the epoch stayed)")
    rig.check(
        not newer,
        f"{len(newer)} change(s) of a newer term (epoch {newer[0].epoch if newer else 0}) "
        "reached the channel while the replicas were frozen",
    )
    settled = rig.group.wait_settled(timeout=60)
    rig.check(settled == primary.port, "a failover happened although the sentinels were frozen")
    _, healed = rig.wait_leader(above_epoch=during - 1, timeout=30)
    spoke = rig.observer.wait_for(lambda m: (m.epoch or 0) >= healed, timeout=15.0)
    rig.check(spoke is not None, f"no term spoke after the partition healed (epoch {healed})")
    time.sleep(rig.profile.burst_s)
