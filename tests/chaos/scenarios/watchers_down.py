"""Scenario 6: every watcher is down for a while (short: ~3 s, long: 20 s); writes continue.

No message and no heartbeat reaches the replicas, so nothing tells them what changed.
Its own invariants:

* every replica reports ``change_stream_active: false`` (3 missed heartbeats);
* answers stay fresh by reading MongoDB: ``SCC_MAX_STALENESS_S`` (+ 0.3 s) after a
  write, a config updated during the outage is answered in its new version, one created
  during the outage is found, and one deleted during the outage answers 404 -- on every
  replica, in every probe round (fresh keys each round: a key read once is trusted for
  the staleness bound, by design). Answers read *at once* after the write are only
  noted: the service trusts a cache for the staleness bound after each reload, and a
  replica that hears nothing reloads every few seconds;
* when a watcher returns it resumes from the stored token, replicas report their stream
  active again, and the fleet converges (shared checks).

Watchers are stopped with SIGTERM (a maintenance stop: final token save, lease released)
on even seeds and SIGKILL (a crash) on odd ones.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from tests.chaos.profile import MAX_STALENESS_S
from tests.chaos.rig import Rig
from tests.chaos.writer import KEY_FIELD

NAME = "watchers-down"
TITLE = "6. every watcher down while writes continue"
#: Probe rounds during the outage (at least), each with fresh keys.
MIN_ROUNDS = 2


def _doc(key: str, rev: int) -> dict[str, Any]:
    return {
        KEY_FIELD: key,
        "rev": rev,
        "enabled": True,
        "ingestion": {"landing_container": f"{key}-c"},
    }


def run(rig: Rig) -> None:
    """Stop every watcher, probe read-through freshness, bring one back."""
    assert rig.writer is not None and rig.observer is not None
    rounds = max(MIN_ROUNDS, int(rig.profile.watcher_outage_s / (MAX_STALENESS_S + 0.5)))
    _prepare(rig, rounds)
    time.sleep(rig.profile.burst_s)
    crash = rig.seed % 2 == 1
    for child in rig.fleet.watchers.values():
        child.stop(kill=crash)
    down_at = time.monotonic()
    rig.note("outage", "SIGKILL" if crash else "SIGTERM")
    _wait_all_inactive(rig)
    done = 0
    while done < rounds and (
        done < MIN_ROUNDS or time.monotonic() - down_at < rig.profile.watcher_outage_s
    ):
        _probe_round(rig, done)
        done += 1
    remaining = rig.profile.watcher_outage_s - (time.monotonic() - down_at)
    if remaining > 0:
        time.sleep(remaining)
    rig.note("outage_s", round(time.monotonic() - down_at, 1))
    rig.note("probe_rounds", done)
    for child in rig.fleet.watchers.values():
        child.start()
    rig.wait_leader(timeout=30)
    _wait_all_active(rig)


def _prepare(rig: Rig, rounds: int) -> None:
    """Create the keys the probes will update and delete; wait until a watcher published them."""
    assert rig.writer is not None and rig.observer is not None
    revs: dict[str, int] = {}
    since = rig.observer.count()
    for n in range(rounds):
        for kind in ("u", "d"):
            key = f"outage-{kind}-{n}"
            rev = rig.writer.next_rev()
            rig.collection.insert_one(_doc(key, rev))
            rig.writer.record_write(key, rev)
            revs[key] = rev
    last = max(revs.values())
    seen = rig.observer.wait_for(lambda m: m.rev == last, timeout=15, since=since)
    rig.check(seen is not None, "the probe keys were never published before the outage")


def _wait_all_inactive(rig: Rig) -> None:
    deadline = time.monotonic() + 15
    pending = set(rig.fleet.replicas)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            body = rig.http.get(rig.replica(name).url + "/health/cache").json()
            if body.get("change_stream_active") is False:
                pending.discard(name)
        time.sleep(0.05)
    rig.check(
        not pending, f"still reporting change_stream_active during the outage: {sorted(pending)}"
    )


def _wait_all_active(rig: Rig) -> None:
    deadline = time.monotonic() + 30
    pending = set(rig.fleet.replicas)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            body = rig.http.get(rig.replica(name).url + "/health/cache").json()
            if body.get("change_stream_active") is True:
                pending.discard(name)
        time.sleep(0.05)
    rig.check(not pending, f"stream not active again after a watcher returned: {sorted(pending)}")


def _probe_round(rig: Rig, n: int) -> None:
    """Write three probes, read them at once (noted) and after the staleness bound (checked)."""
    assert rig.writer is not None
    updated, created, deleted = f"outage-u-{n}", f"outage-c-{n}", f"outage-d-{n}"
    rev_u, rev_c = rig.writer.next_rev(), rig.writer.next_rev()
    rig.collection.update_one({KEY_FIELD: updated}, {"$set": {"rev": rev_u}})
    rig.writer.record_write(updated, rev_u)
    rig.collection.insert_one(_doc(created, rev_c))
    rig.writer.record_write(created, rev_c)
    rig.collection.delete_one({KEY_FIELD: deleted})
    rig.writer.record_delete(deleted)
    wanted: list[tuple[str, int | None]] = [(updated, rev_u), (created, rev_c), (deleted, None)]
    stale_at_once = len(_stale_answers(rig, wanted))
    rig.note(f"stale_right_after_write_round_{n}", f"{stale_at_once}/{3 * len(rig.fleet.replicas)}")
    time.sleep(MAX_STALENESS_S + 0.3)
    for stale in _stale_answers(rig, wanted):
        rig.check(
            False, f"{stale} {MAX_STALENESS_S + 0.3:.1f} s after the write (read-through not fresh)"
        )


def _stale_answers(rig: Rig, wanted: list[tuple[str, int | None]]) -> list[str]:
    out = []
    for name, url in rig.replica_urls().items():
        for key, want in wanted:
            response = rig.http.get(f"{url}/configs/{key}")
            got = orjson.loads(response.content).get("rev") if response.status_code == 200 else None
            if response.status_code != (404 if want is None else 200) or got != want:
                has = "nothing" if want is None else f"rev {want}"
                out.append(f"{name} during the outage: {key} answered {response.status_code} "
                           f"rev {got}, MongoDB has {has}")  # fmt: skip
    return out
