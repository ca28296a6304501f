"""Scenario: the Redis primary is cut off from its replicas and sentinels, then healed.

Both replicas and all three sentinels are SIGSTOPped (they keep their sockets and answer
nothing) while clients still reach the primary; after a while they are resumed. No
failover can happen, and no *new* lease can be confirmed on the replicas (``WAIT``), so
a leader that loses its lease meanwhile is not replaced until the partition heals. Its
own invariants: the fleet keeps serving, no second leader is confirmed while the
replicas are frozen, and after healing the shared checks hold.
"""

from __future__ import annotations

import time

from tests.chaos.rig import Rig
from tests.chaos.sentinel_rig import SentinelRig

NAME = "sentinel-partition"
TITLE = "S3. Redis primary cut off from replicas and sentinels, then healed"
RIG = SentinelRig


def run(rig: Rig) -> None:
    """Freeze every replica and sentinel for a few bursts, then resume them."""
    assert isinstance(rig, SentinelRig)
    _, epoch = rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    primary = rig.group.primary
    frozen = [n for n in rig.group.data if n is not primary] + list(rig.group.sentinels)
    for node in frozen:
        node.pause()
    try:
        time.sleep(3 * rig.profile.burst_s)
        leader, during = rig.leader()
        rig.note("epoch_before_during", f"{epoch} -> {during}")
        rig.check(
            during == epoch or leader is None,
            f"a new lease (epoch {during}) was taken while the replicas were frozen",
        )
    finally:
        for node in frozen:
            node.resume()
    settled = rig.group.wait_settled(timeout=60)
    rig.check(settled == primary.port, "a failover happened although the sentinels were frozen")
    time.sleep(rig.profile.burst_s)
