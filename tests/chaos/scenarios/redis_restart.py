"""Scenario 3: Redis is killed and restarted mid-burst; persistence is off, so every key is gone.

Lease, epoch, seq, resume token and the subscriptions all vanish at once. Its own
invariants: a watcher is elected again on the new server and, having no token,
publishes ``resync`` (``no_token``) and starts from now; every replica resyncs; and
the fleet converges (the shared checks). Epoch ordering is checked per Redis
incarnation (epochs legitimately restart at 1).
"""

from __future__ import annotations

import time

import httpx

from tests.chaos.probing import scrape
from tests.chaos.rig import Rig

NAME = "redis-restart"
TITLE = "3. Redis killed and restarted mid-burst (data lost)"


def run(rig: Rig) -> None:
    """Kill Redis mid-burst, start it again empty, and check re-election and resyncs."""
    assert rig.fleet.redis is not None and rig.observer is not None
    rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    before = {name: sum(rig.resyncs(name).values()) for name in rig.fleet.replicas}
    old_run_id = rig.observer.run_id
    rig.fleet.redis.restart(kill=True)
    rig.redis_resets.append(time.monotonic())
    leader, epoch = rig.wait_leader(timeout=30)
    rig.note("new_leader_epoch", epoch)
    rig.wait(lambda: rig.observer is not None and rig.observer.run_id != old_run_id,
             timeout=15, what="the observer to subscribe on the new Redis")  # fmt: skip
    time.sleep(rig.profile.burst_s)
    rig.wait(lambda: _no_token_resyncs(rig) > 0, timeout=20,
             what="a watcher to publish resync(no_token)")  # fmt: skip
    for name in rig.fleet.replicas:
        ok = _eventually(lambda n=name: sum(rig.resyncs(n).values()) > before[n], timeout=20)
        rig.check(ok, f"{name} did not resync after Redis lost its data")
    rig.check(bool(rig.redis.exists(rig.keys.resume)) or _eventually(
        lambda: bool(rig.redis.exists(rig.keys.resume)), timeout=10
    ), "the new leader never saved a resume token on the new Redis")  # fmt: skip


def _no_token_resyncs(rig: Rig) -> float:
    total = 0.0
    for child in rig.fleet.watchers.values():
        try:
            metrics = scrape(rig.http, child.url)
        except httpx.HTTPError:
            continue
        total += metrics.by("scc_watcher_resyncs_total", "reason").get("no_token", 0.0)
    return total


def _eventually(condition: object, *, timeout: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
