"""The eight fault-injection scenarios of issue 8, one module each, in the order of the issue.

A scenario is a function ``run(rig)`` that injects its fault while the rig's writer and
event sender keep working, and records its own invariants with ``rig.check``; the rig
then settles the fleet and applies the checks every scenario shares (each replica equal
to the collection, events for existing configs accepted, epochs and sequence numbers in
order on the channel, no process dead or logging a traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.rig import Rig
from tests.chaos.scenarios import (
    bad_input,
    leader_kill,
    leader_pause,
    mongo_faults,
    pubsub_loss,
    read_your_write,
    redis_restart,
    watchers_down,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named fault and the function that injects it."""

    name: str
    title: str
    run: Callable[[Rig], None]
    extra_env: dict[str, str] = field(default_factory=dict)


SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(m.NAME, m.TITLE, m.run)
    for m in (
        leader_kill,
        leader_pause,
        redis_restart,
        pubsub_loss,
        mongo_faults,
        watchers_down,
        bad_input,
        read_your_write,
    )
)
BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}
