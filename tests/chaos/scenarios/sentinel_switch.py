"""Scenario: a planned ``SENTINEL FAILOVER`` mid-burst; the old primary stays writable.

After the switch the old primary keeps accepting writes until Sentinel reconfigures it
(8 s or more), and every write it takes then is lost when it resyncs from the new one.
Its own invariants: every watcher and replica hears ``+switch-master`` and leaves the
old primary at once -- a second after the switch no watcher or replica connection is
left on it (``CLIENT LIST``) -- a leader publishes on the new primary, and the shared
checks hold.
"""

from __future__ import annotations

import time

from tests.chaos.rig import Rig
from tests.chaos.sentinel_rig import SentinelRig

NAME = "sentinel-switch"
TITLE = "S2. planned SENTINEL FAILOVER mid-burst (old primary stays writable)"
RIG = SentinelRig
#: Longer than a heartbeat period plus the switch announcement; far below Sentinel's 8 s.
LEAVE_WITHIN_S = 1.0


def run(rig: Rig) -> None:
    """Fail over by hand, then check nobody writes to the demoted primary."""
    assert isinstance(rig, SentinelRig) and rig.observer is not None
    rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    old = rig.group.primary
    switched = time.monotonic()
    rig.group.failover()
    rig.group.wait_new_primary(old.port, timeout=30)
    rig.note("sentinel_switch_s", round(time.monotonic() - switched, 2))
    time.sleep(LEAVE_WITHIN_S)
    with old.client() as direct:
        clients = direct.client_list()
    stayed = sorted(
        f"{c['name']} (cmd={c.get('cmd')} age={c.get('age')}s idle={c.get('idle')}s "
        f"sub={c.get('sub')} flags={c.get('flags')})"
        for c in clients
        if c.get("name", "").startswith(("scc-watcher", "scc-replica"))
    )
    rig.check(not stayed, f"still connected to the demoted primary: {stayed}")
    first = rig.observer.wait_for(lambda m: not m.injected and m.mono > switched, timeout=20)
    rig.check(first is not None, "nothing was published after the switch")
    rig.redis_resets.append(time.monotonic())
    time.sleep(rig.profile.burst_s)
    rig.group.wait_settled(timeout=60)
