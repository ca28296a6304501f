"""Scenario: the Redis primary is SIGKILLed mid-burst; Sentinel promotes a replica.

The fleet reaches Redis only through ``redis+sentinel://`` (:class:`SentinelRig`). The
promoted replica may lack the primary's last writes (replication is asynchronous), so the
lease, epoch, seq or token may step back. Its own invariants: Sentinel names a new
primary; a leader publishes on it afterwards; the killed node, restarted, rejoins as a
replica; and the shared checks hold (every replica equal to the collection, epochs in
order per Redis instance, no answer going back in time). Time from the kill to the first
message of the new primary is noted.
"""

from __future__ import annotations

import time

from tests.chaos.rig import Rig
from tests.chaos.sentinel_rig import SentinelRig

NAME = "sentinel-kill"
TITLE = "S1. Redis primary SIGKILL mid-burst (Sentinel failover)"
RIG = SentinelRig


def run(rig: Rig) -> None:
    """Kill the primary, wait for the promotion and a publish on the new primary, restart it."""
    assert isinstance(rig, SentinelRig) and rig.observer is not None
    rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    old = rig.group.primary
    sessions = rig.observer.sessions
    killed_at = time.monotonic()
    old.kill()
    new_port = rig.group.wait_new_primary(old.port, timeout=30)
    rig.note("sentinel_promotion_s", round(time.monotonic() - killed_at, 2))
    rig.wait(lambda: rig.observer is not None and rig.observer.sessions > sessions,
             timeout=20, what="the observer to subscribe on the new primary")  # fmt: skip
    first = rig.observer.wait_for(lambda m: not m.injected and m.mono > killed_at, timeout=20)
    if rig.check(first is not None, "nothing was published after the primary was killed"):
        assert first is not None
        rig.note("first_message_after_kill_s", round(first.mono - killed_at, 2))
    rig.redis_resets.append(time.monotonic())  # the promoted replica may lack the last writes
    time.sleep(rig.profile.burst_s)
    old.start()
    settled = rig.group.wait_settled(timeout=60)
    # Sentinel may fail over once more while the old primary rejoins (its decision, not
    # ours): the fleet must converge either way, which the shared checks verify.
    if settled != new_port:
        rig.note("settled_on_another_primary", f"{settled} (promoted first: {new_port})")
