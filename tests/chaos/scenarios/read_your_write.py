"""Scenario 8: read-your-write under load -- a config is created and its first blob event follows.

Four threads each create a config in MongoDB (its own landing container) and at once
post its first blob event to a random replica, half addressed by container (Event Grid
subject), half by ``source_id`` (CloudEvents ``sourceid``), while the writer keeps
churning. The replica has usually not heard of the config yet: it must read MongoDB on
the miss rather than answer "unknown". Its own invariants: every event is accepted for
the config just created, none is dead-lettered, and ``{ns}:events:dlq`` stays empty.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.chaos.events import Delivery, cloud_event, event_grid
from tests.chaos.probing import delta, scrape
from tests.chaos.rig import Rig
from tests.chaos.writer import KEY_FIELD

NAME = "read-your-write"
TITLE = "8. create a config, send its first blob event at once (read-your-write)"
WORKERS = 4


def run(rig: Rig) -> None:
    """Create ``profile.read_your_writes`` configs, each followed at once by its first event."""
    assert rig.writer is not None
    time.sleep(rig.profile.burst_s)
    lock = threading.Lock()
    outcomes: dict[str, Delivery] = {}

    def one(i: int) -> None:
        assert rig.writer is not None
        rng = random.Random(rig.seed * 100_000 + i)
        key, container = f"ryw-{i:04d}", f"ryw-landing-{i:04d}"
        rev = rig.writer.next_rev()
        doc: dict[str, Any] = {
            KEY_FIELD: key,
            "rev": rev,
            "enabled": True,
            "ingestion": {"landing_container": container, "path_pattern": "incoming/*.csv"},
        }
        rig.collection.insert_one(doc)
        rig.writer.record_write(key, rev)
        path = f"incoming/first-{i}.csv"
        if i % 2:
            event = event_grid(f"ryw-{i}", container, path)
        else:
            event = cloud_event(f"ryw-{i}", container, path, source_id=key)
        delivery = rig.events.deliver(event, source_id=key, rng=rng)
        with lock:
            outcomes[key] = delivery

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="chaos-ryw") as pool:
        list(pool.map(one, range(rig.profile.read_your_writes)))
    failed = {k: d for k, d in outcomes.items() if d.outcome != "accepted"}
    for key, delivery in sorted(failed.items())[:10]:
        rig.check(
            False, f"first event for new config {key}: {delivery.outcome} ({delivery.detail})"
        )
    rig.check(not failed, f"{len(failed)} of {len(outcomes)} first events were not accepted")
    dlq = rig.redis.xlen(rig.keys.events_dlq)
    rig.check(dlq == 0, f"{dlq} events in {rig.keys.events_dlq}")
    rig.note("created_then_sent", len(outcomes))
    rig.note("retried_503", sum(d.retried_503 for d in outcomes.values()))
    reads = sum(
        int(delta(scrape(rig.http, url), rig.baseline(name), "scc_replica_store_reads_total"))
        for name, url in rig.replica_urls().items()
    )
    rig.note("lookups_that_read_mongodb", reads)
