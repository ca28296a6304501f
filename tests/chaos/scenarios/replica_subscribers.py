"""Scenario: service replicas subscribe on Redis replicas; one of those is restarted mid-burst.

The fleet is :class:`~tests.chaos.sentinel_rig.SentinelRig`'s (1 primary, 2 replicas, 3
sentinels); every service replica also gets ``SCC_REDIS_SUBSCRIBE_URL`` = the group's URL
with ``?role=replica``, so it subscribes on one of the master's replicas (picked by its
instance id) while seq reads, heartbeat hashes and events go to the primary. First one
Redis replica is frozen (SIGSTOP) for :data:`LAG_S` mid-burst -- replication lag: every
message reaches its subscribers that much later, none is lost, so no one may reload.
Then the Redis replica carrying the most subscriptions is SIGKILLed and started again (it
resyncs from the primary). Its own invariants: at the start every subscription sits on a
Redis replica, never the primary; no reload after the lag; afterwards every service
replica is subscribed again somewhere; a service replica whose subscription did not move
reloads for no reason (a move may cost a reload, when messages were lost with it: a
proven loss). Noted: where
the subscriptions were before and after, how many moved, and reloads per service replica.
The shared checks hold as always (caches exact, monotonic, bounded staleness).
"""

from __future__ import annotations

import time
from typing import Any

from tests.chaos.rig import REPLICAS, Rig
from tests.chaos.sentinel_rig import SentinelRig
from tests.support.fleet import Child

NAME = "replica-subscribers"
#: How long a Redis replica is frozen to make its subscribers lag (under 3 heartbeats).
LAG_S = 0.45
TITLE = "S4. Subscribers on Redis replicas; a Redis replica restarted mid-burst"


class ReplicaSubscriberRig(SentinelRig):
    """The Sentinel rig whose service replicas subscribe through ``?role=replica``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        start_replica = self.fleet.start_replica

        def on_replicas(instance_id: str, *, wait_ready: bool = True, **env: str) -> Child:
            env.setdefault("SCC_REDIS_SUBSCRIBE_URL", f"{self.group.url()}?role=replica")
            return start_replica(instance_id, wait_ready=wait_ready, **env)

        self.fleet.start_replica = on_replicas  # type: ignore[method-assign]

    def subscribed_on(self) -> dict[str, int | None]:
        """Service replica → port of the Redis node its subscription sits on (None: none)."""
        where: dict[str, int | None] = dict.fromkeys(REPLICAS)
        for node in self.group.data:
            if not node.running or node.paused:
                continue
            try:
                with node.client() as client:
                    clients = client.client_list(_type="pubsub")
            except Exception:  # a node going down while asked: it holds nothing
                continue
            for entry in clients:
                name = str(entry.get("name", ""))
                if name.startswith("scc-replica-sub:"):
                    where[name.split(":", 1)[1]] = node.port
        return where


RIG = ReplicaSubscriberRig


def run(rig: Rig) -> None:
    """Check where the subscriptions sit, restart the busiest Redis replica, watch them move."""
    assert isinstance(rig, ReplicaSubscriberRig)
    rig.wait_leader()
    primary = rig.group.primary.port
    before = rig.subscribed_on()
    rig.note("subscribed_before", _named(rig, before))
    for name, port in before.items():
        rig.check(port is not None, f"{name} is not subscribed on any Redis node")
        rig.check(port != primary, f"{name} subscribes on the primary, not on a replica")
    ports = [p for p in before.values() if p is not None and p != primary]
    if ports:
        lagging = rig.group.node_on(ports[0])
        time.sleep(rig.profile.burst_s / 2)
        lagging.pause()
        time.sleep(LAG_S)
        lagging.resume()
        time.sleep(rig.profile.burst_s / 2)
        rig.check_no_unproven_reloads(f"a Redis replica lagged {LAG_S} s")
    victim = max(set(ports), key=ports.count) if ports else None
    if not rig.check(victim is not None, "no Redis replica carries a subscription"):
        return
    assert victim is not None
    node = rig.group.node_on(victim)
    restarted_at = time.monotonic()
    node.kill()
    time.sleep(0.3)
    node.start()
    rig.note("victim_restart_s", round(time.monotonic() - restarted_at, 2))
    rig.wait(lambda: None not in rig.subscribed_on().values(), timeout=30,
             what="every service replica to be subscribed again")  # fmt: skip
    rig.note("resubscribed_s", round(time.monotonic() - restarted_at, 2))
    time.sleep(rig.profile.burst_s)
    rig.group.wait_settled(timeout=30)
    after = rig.subscribed_on()
    moved = [name for name in REPLICAS if after[name] != before[name]]
    rig.note("subscribed_after", _named(rig, after))
    rig.note("moved", len(moved))
    rig.note("reloads", {name: rig.full_reloads(name) for name in REPLICAS})
    for name in REPLICAS:
        if name not in moved and before[name] != victim:
            unproven = {r: n for r, n in rig.resyncs(name).items() if r != "broadcast"}
            rig.check(not unproven, f"{name} did not move but reloaded: {unproven}")


def _named(rig: ReplicaSubscriberRig, where: dict[str, int | None]) -> dict[str, str]:
    primary = rig.group.primary.port
    names = {n.port: f"redis-{i}" for i, n in enumerate(rig.group.data)}
    return {
        name: "-" if port is None else f"{names[port]}{'(primary)' if port == primary else ''}"
        for name, port in where.items()
    }
