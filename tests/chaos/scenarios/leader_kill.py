"""Scenario 1: the leader watcher is SIGKILLed mid-burst, again and again.

Odd seeds: every stop is a SIGKILL (a crash; the lease runs out, replicas hear nothing
for longer than 3 heartbeats and reload). Even seeds model a rolling restart under an
update-heavy load without deletes: stops alternate SIGTERM (the leader finishes its
publish, saves its token and releases the lease, so the standby takes over within one
poll and replicas do not reload) and SIGKILL -- the handover where a replayed change
must be translated exactly right, because nothing else repairs the caches.

Invariants of its own: after every kill the other watcher takes the lease with a higher
epoch and publishes; the killed one comes back as a standby (so the next kill hits the
new leader); and no replica reloads the collection for any reason but a broadcast
``resync``: the successor continues the sequence, so silence alone proves nothing was
lost, and a reload of every replica at once would be a thundering herd on MongoDB at its
busiest moment. Replays after failover are harmless because messages carry current state;
the shared checks (gap-free seq across leaders, epochs in order, replicas equal to the
collection) do the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.chaos.observing import Seen
from tests.chaos.rig import Rig

NAME = "leader-kill"
TITLE = "1. leader SIGKILL mid-burst (repeated)"


def run(rig: Rig) -> None:
    """Kill the leader ``profile.leader_kills`` times, restarting it as a standby."""
    assert rig.observer is not None
    failovers: list[float] = []
    graceful = 0
    for i in range(rig.profile.leader_kills):
        leader, epoch = rig.wait_leader()
        time.sleep(rig.profile.burst_s)
        killed_at = time.monotonic()
        kill = rig.seed % 2 == 1 or i % 2 == 1
        graceful += not kill
        rig.watcher(leader).stop(kill=kill)
        new_leader, new_epoch = rig.wait_leader(above_epoch=epoch)
        rig.check(new_leader != leader, f"killed leader {leader} still holds the lease")
        published = rig.observer.wait_for(_of_epoch(new_epoch), timeout=15.0)
        if rig.check(
            published is not None, f"new leader {new_leader} (epoch {new_epoch}) never published"
        ):
            assert published is not None
            failovers.append(published.mono - killed_at)
        rig.watcher(leader).start()
    rig.note("stops", f"{rig.profile.leader_kills - graceful} SIGKILL, {graceful} SIGTERM")
    rig.check_no_unproven_reloads("failovers that lost nothing")
    if failovers:
        rig.note("max_failover_s", round(max(failovers), 2))


def _of_epoch(epoch: int) -> Callable[[Seen], bool]:
    return lambda m: m.epoch == epoch and not m.injected
