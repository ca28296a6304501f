"""Scenario 5: MongoDB misbehaves under the change stream, through the double's fault hooks.

Each fault mid-burst, with the writer running throughout:

1. ``hangup``: every connection closed mid-stream (the driver resumes by itself);
2. step-down: the next ``getMore`` fails with 10107 NotWritablePrimary (resumable);
3. history lost on the live stream: the next ``getMore`` fails with 286;
4. history lost on resume: the leader is SIGKILLed, more writes land, the double forgets
   its history, and the successor's stored token is too old (286 on open);
5. the collection is dropped and recreated (pinned configs and unique index restored).

Its own invariants: 1 and 2 need no resync (the driver resumes; nothing is lost), 3 and
4 each end in a ``resync`` with reason ``history_lost``, 5 in one with reason ``drop``
(or ``invalidate``), and the watcher keeps publishing after each; the shared checks
prove the replicas end equal to the (recreated) collection.
"""

from __future__ import annotations

import time

from tests.chaos.observing import Seen
from tests.chaos.rig import Rig
from tests.chaos.writer import KEY_FIELD, pinned_config

NAME = "mongo-faults"
TITLE = "5. MongoDB hang-up, step-down, history lost (286), drop + recreate"
RESYNC_WAIT_S = 15.0


def run(rig: Rig) -> None:
    """Inject the five faults in turn (module docstring)."""
    assert rig.observer is not None
    rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    closed = rig.double_fault("hangup").get("closed")
    rig.note("hangup_closed", closed)
    _still_publishing(rig, "hang-up")

    time.sleep(rig.profile.burst_s)
    rig.double_fault("failCommands", commands=["getMore"], times=1, code=10107)
    _consumed(rig, "step-down (10107)")
    _still_publishing(rig, "step-down")

    time.sleep(rig.profile.burst_s)
    since = rig.observer.count()
    rig.double_fault("failCommands", commands=["getMore"], times=1, code=286)
    _consumed(rig, "history lost (286) on getMore")
    _resync(rig, since, {"history_lost"}, "286 on the live stream")

    time.sleep(rig.profile.burst_s)
    _history_lost_on_resume(rig)

    time.sleep(rig.profile.burst_s)
    _drop_and_recreate(rig)
    time.sleep(rig.profile.burst_s)
    unexpected = {
        m.reason
        for m in rig.observer.snapshot()
        if m.kind == "resync" and m.reason not in {"history_lost", "drop", "invalidate"}
    }
    rig.check(
        not unexpected, f"resyncs published for unexpected reasons: {sorted(map(str, unexpected))}"
    )


def _consumed(rig: Rig, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not rig.double_fault("status").get("rules"):
            return
        time.sleep(0.05)
    rig.check(False, f"{what}: no getMore reached the double within 10 s")


def _still_publishing(rig: Rig, after: str) -> None:
    assert rig.observer is not None
    since = rig.observer.count()
    seen = rig.observer.wait_for(
        lambda m: m.kind in ("upsert", "delete") and not m.injected,
        timeout=RESYNC_WAIT_S,
        since=since,
    )
    rig.check(seen is not None, f"no change published within {RESYNC_WAIT_S} s after the {after}")


def _resync(rig: Rig, since: int, reasons: set[str], what: str) -> Seen | None:
    assert rig.observer is not None
    seen = rig.observer.wait_for(
        lambda m: m.kind == "resync" and m.reason in reasons and not m.injected,
        timeout=RESYNC_WAIT_S,
        since=since,
    )
    rig.check(seen is not None, f"{what}: no resync with reason in {sorted(reasons)} was published")
    return seen


def _history_lost_on_resume(rig: Rig) -> None:
    assert rig.observer is not None and rig.writer is not None
    leader, epoch = rig.wait_leader()
    since = rig.observer.count()
    rig.watcher(leader).stop(kill=True)
    rev = rig.writer.next_rev()
    doc = {KEY_FIELD: "history-probe", "rev": rev, "ingestion": {"landing_container": "probe"}}
    rig.collection.replace_one({KEY_FIELD: "history-probe"}, doc, upsert=True)
    rig.writer.record_write("history-probe", rev)
    rig.double_fault("forgetHistory")
    _, new_epoch = rig.wait_leader(above_epoch=epoch)
    seen = _resync(rig, since, {"history_lost"}, "successor resuming past forgotten history")
    if seen is not None:
        rig.check(
            seen.epoch == new_epoch,
            f"history_lost resync came from epoch {seen.epoch}, not {new_epoch}",
        )
    rig.watcher(leader).start()


def _drop_and_recreate(rig: Rig) -> None:
    assert rig.observer is not None and rig.writer is not None and rig.sender is not None
    since = rig.observer.count()
    with rig.sender.hold(), rig.writer.hold():
        rig.collection.drop()
        rig.collection.create_index(KEY_FIELD, unique=True)
        rig.collection.insert_many([pinned_config(i) for i in range(rig.profile.pinned)])
    rig.writer.forget_model()
    _resync(rig, since, {"drop", "invalidate"}, "collection dropped")
    _still_publishing(rig, "drop and recreate")
