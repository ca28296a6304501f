"""Scenario 12: Redis is gone long enough for every replica to fail to resubscribe > 10 times.

What it models: a long Redis outage (hours, in production) behind an endpoint that still
accepts connections. A subscriber's reconnect backoff must stay capped and never
overflow or kill the process, however many attempts fail; lookups meanwhile read MongoDB
once the cache is older than ``SCC_MAX_STALENESS_S``; when Redis returns (empty: no
persistence), watchers are elected again and every replica reloads.

The replicas have no knob to compress their backoff clock, so the outage is measured in
*failed attempts*, not seconds: Redis is SIGKILLed mid-burst and :class:`DeadRedis`
takes its port, counting each replica's failed ``SUBSCRIBE`` on the wire (redis-py's own
connection retries included); the outage lasts until every replica failed more than
``profile.redis_outage_reconnects`` times (or
``profile.redis_outage_max_s`` passed, which is then a violation: a replica that stops
trying never comes back).

Its own invariants: each replica tried more than the required number of times, kept
running, resynced after Redis returned, and the fleet converges with zero divergences
(shared checks, which also judge every answer given during the outage for staleness).
"""

from __future__ import annotations

import time

from tests.chaos.dead_redis import DeadRedis
from tests.chaos.rig import Rig

NAME = "redis-outage"
TITLE = "12. Redis down for > 10 failed reconnects of every replica, then back empty"


def run(rig: Rig) -> None:
    """Kill Redis, count failed resubscriptions, bring Redis back, expect reloads."""
    assert rig.fleet.redis is not None
    rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    before = {name: sum(rig.resyncs(name).values()) for name in rig.fleet.replicas}
    need = rig.profile.redis_outage_reconnects
    server = rig.fleet.redis
    assert rig.sender is not None
    with rig.sender.hold():  # Event Grid retries for hours; the sender's deadline is 30 s
        server.stop(kill=True)
        down_at = time.monotonic()
        rig.redis_resets.append(down_at)
        dead = DeadRedis(server.port).start()
        try:
            deadline = down_at + rig.profile.redis_outage_max_s
            while time.monotonic() < deadline and any(
                dead.subscribes(f"scc-replica:{name}") <= need for name in rig.fleet.replicas
            ):
                time.sleep(0.2)
        finally:
            dead.stop()
        server.start()
    attempts = {name: dead.subscribes(f"scc-replica:{name}") for name in rig.fleet.replicas}
    rig.note("outage_s", round(time.monotonic() - down_at, 1))
    rig.note("failed_resubscribes", attempts)
    for name, n in attempts.items():
        rig.check(n > need, f"{name} tried to resubscribe only {n} times (> {need} expected)")
    rig.wait_leader(timeout=30)
    for name in rig.fleet.replicas:
        rig.check(rig.replica(name).alive, f"{name} died during the Redis outage")
        rig.check(
            _eventually(lambda n=name: sum(rig.resyncs(n).values()) > before[n], timeout=20),
            f"{name} did not reload after Redis came back empty",
        )
    time.sleep(rig.profile.burst_s)


def _eventually(condition: object, *, timeout: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
