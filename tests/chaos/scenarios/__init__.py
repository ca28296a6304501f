"""The fault-injection scenarios, one module each: issue 8's eight, then issue 11's four.

A scenario is a function ``run(rig)`` that injects its fault while the rig's writer and
event sender keep working, and records its own invariants with ``rig.check``; a module
may set ``EXTRA_ENV`` (settings of the whole fleet for that scenario). The rig
then settles the fleet and applies the checks every scenario shares (each replica equal
to the collection, events for existing configs accepted, epochs and sequence numbers in
order on the channel, no process dead or logging a traceback, no answer going back in
time and none staler than the bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.rig import Rig
from tests.chaos.scenarios import (
    bad_input,
    cluster_failover,
    dotted_key,
    leader_kill,
    leader_pause,
    mongo_faults,
    poison_documents,
    pubsub_loss,
    read_your_write,
    redis_outage,
    redis_restart,
    redis_tail_loss,
    replica_subscribers,
    sentinel_kill,
    sentinel_partition,
    sentinel_switch,
    watchers_down,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named fault and the function that injects it."""

    name: str
    title: str
    run: Callable[[Rig], None]
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The rig class the scenario needs (a Sentinel group for the sentinel-* ones).
    rig: type[Rig] = Rig


SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(m.NAME, m.TITLE, m.run, dict(getattr(m, "EXTRA_ENV", {})), getattr(m, "RIG", Rig))
    for m in (
        leader_kill,
        leader_pause,
        redis_restart,
        pubsub_loss,
        mongo_faults,
        watchers_down,
        bad_input,
        read_your_write,
        redis_tail_loss,
        poison_documents,
        dotted_key,
        redis_outage,
        sentinel_kill,
        sentinel_switch,
        cluster_failover,
        sentinel_partition,
        replica_subscribers,
    )
)
BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}
