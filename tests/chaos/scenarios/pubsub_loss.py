"""Scenario 4: a replica loses its subscription, then every subscriber does, then one freezes.

Pub/sub drops messages silently when a connection goes; a replica must notice on its
own. Steps, each mid-burst:

1. ``CLIENT KILL ID`` on one replica's pub/sub connection (found by its client name);
2. ``CLIENT KILL TYPE pubsub``: every subscriber at once (the observer reconnects too);
3. another replica is SIGSTOPped for longer than 3 heartbeats, then SIGCONT.

Its own invariants: each replica that lost its connection subscribes again (a new pub/sub
connection under its name) -- reloading only if a message was lost meanwhile, which its
seq proves -- the frozen one reports its stream active again after waking, and all
converge.
"""

from __future__ import annotations

import random
import signal
import time

from tests.chaos.rig import Rig

NAME = "pubsub-loss"
TITLE = "4. replica pub/sub killed; replica SIGSTOP past 3 heartbeats"


def run(rig: Rig) -> None:
    """Kill one, then all pub/sub connections; freeze and thaw another replica."""
    rng = random.Random(rig.seed)
    names = sorted(rig.fleet.replicas)
    target, frozen = rng.sample(names, 2)
    time.sleep(rig.profile.burst_s)
    _kill_one(rig, target)
    time.sleep(rig.profile.burst_s)
    before = {name: _pubsub_ids(rig, name) for name in names}
    killed = rig.redis.client_kill_filter(_type="pubsub")
    rig.note("pubsub_connections_killed", killed)
    for name in names:
        rig.check(
            _resubscribed_since(rig, name, before[name]),
            f"{name} did not subscribe again after CLIENT KILL TYPE pubsub",
        )
    time.sleep(rig.profile.burst_s)
    _freeze(rig, frozen)


def _pubsub_ids(rig: Rig, name: str) -> set[str]:
    clients = rig.redis.client_list(_type="pubsub")
    return {str(c["id"]) for c in clients if c.get("name") == f"scc-replica:{name}"}


def _kill_one(rig: Rig, target: str) -> None:
    ids = _pubsub_ids(rig, target)
    if not rig.check(bool(ids), f"no pub/sub connection named scc-replica:{target}"):
        return
    for client_id in ids:
        rig.redis.client_kill_filter(_id=client_id)
    rig.check(
        _resubscribed_since(rig, target, ids),
        f"{target} did not subscribe again after its pub/sub was killed",
    )
    rig.note("killed_one", target)


def _freeze(rig: Rig, name: str) -> None:
    child = rig.replica(name)
    child.signal(signal.SIGSTOP)
    try:
        time.sleep(rig.profile.replica_pause_s)
    finally:
        child.signal(signal.SIGCONT)
    rig.note("frozen", f"{name} for {rig.profile.replica_pause_s} s")
    deadline = time.monotonic() + 20
    active = False
    while time.monotonic() < deadline and not active:
        body = rig.http.get(child.url + "/health/cache").json()
        active = bool(body.get("change_stream_active"))
        time.sleep(0.1)
    rig.check(active, f"{name} did not report its stream active within 20 s of SIGCONT")


def _resubscribed_since(rig: Rig, name: str, before: set[str], timeout: float = 20.0) -> bool:
    """A pub/sub connection of ``name`` that did not exist before the kill, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pubsub_ids(rig, name) - before:
            return True
        time.sleep(0.1)
    return False
