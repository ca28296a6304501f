"""Scenario 11: the whole fleet keyed by a dotted field, ``SCC_KEY_FIELD=meta.sid``.

A dotted key field is documented as supported; every part of the system that derives a
config's key (the watcher translating events, the replica's cache and its reload, the
read-through, event matching by container or by source id) must read the nested value.
Here every document -- the writer's, the pinned configs, the settle marker -- carries its
key only under ``meta.sid`` (no top-level ``source_id`` at all), and the event sender
keeps routing events for the pinned configs by container and by source id.

Steps: a burst; configs created and sent their first blob event by container at once
(the replica must find them by reading MongoDB on the miss); a rolling restart of the
leader (SIGTERM) so replicas follow a second term; another burst. Its own invariants:
every first event is accepted for the config just created (not for ``"None"``); the
shared checks judge the rest (events for pinned configs accepted under their key, every
answer fresh and monotonic, every replica equal to the collection).
"""

from __future__ import annotations

import random
import time

from tests.chaos.events import event_grid
from tests.chaos.rig import Rig

NAME = "dotted-key"
TITLE = "11. the whole fleet with SCC_KEY_FIELD=meta.sid (dotted key field)"
KEY_FIELD = "meta.sid"
EXTRA_ENV = {"SCC_KEY_FIELD": KEY_FIELD}
#: Configs created and sent their first event at once.
NEW_CONFIGS = 10


def run(rig: Rig) -> None:
    """Burst, create-then-route, rolling leader restart, burst (module docstring)."""
    rig.check(rig.key_field == KEY_FIELD, f"harness: the rig keys by {rig.key_field!r}")
    leader, epoch = rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    rng = random.Random(rig.seed)
    refused: list[str] = []
    for i in range(NEW_CONFIGS):
        key, container = f"dotted-{i:03d}", f"dotted-landing-{i:03d}"
        rig.write_probe(key, {"ingestion": {"landing_container": container}})
        event = event_grid(f"dotted-{i}", container, f"incoming/{i}.csv")
        delivery = rig.events.deliver(event, source_id=key, rng=rng)
        if delivery.outcome != "accepted":
            refused.append(f"{key}: {delivery.outcome} ({delivery.detail[:200]})")
    for line in refused[:5]:
        rig.check(False, f"first event for new config {line}")
    rig.note("created_then_routed", NEW_CONFIGS - len(refused))
    rig.watcher(leader).stop()
    rig.wait_leader(above_epoch=epoch)
    rig.watcher(leader).start()
    time.sleep(rig.profile.burst_s)
