"""The end of every run: settle the fleet, compare every replica, judge what was answered.

Why it exists: the verdict is the same for every scenario and is most of what makes a
run trustworthy, so it lives apart from the rig that starts and owns the fleet.
:func:`settle` stops the writes, publishes a marker document and waits until every
replica passed it (a generous deadline, never a speed assertion), stops the reader,
compares every replica with the collection (:mod:`tests.chaos.digesting`), then applies
the checks every scenario shares: channel ordering, events accepted, resyncs and full
reloads counted, monotonic reads and bounded staleness over every recorded answer
(:mod:`tests.chaos.consistency`), and no process dead or logging a traceback.

Settling: a marker document is written last; once a watcher published it (seen on the
channel with its seq S), every change before it was published too, so a replica whose
``last_seq`` reached S with its stream active must hold exactly the collection.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tests.chaos.consistency import monotonic_violations, stale_reads
from tests.chaos.digesting import ReplicaDigest, compare_replica, read_collection
from tests.chaos.observing import Seen, max_publish_lag, ordering_violations
from tests.chaos.probing import cache_health
from tests.chaos.writer import MARKER_KEY, with_key
from tests.support.fleet import Child

if TYPE_CHECKING:
    from tests.chaos.rig import Rig

_LOG_TAIL: Final = 2500
#: Examples of each consistency finding listed with a failed result.
_SHOWN: Final = 10


def settle(rig: Rig) -> None:
    """Stop writes, wait for convergence, compare every replica, run the shared checks."""
    assert rig.writer is not None and rig.observer is not None and rig.sender is not None
    stopped = time.monotonic()
    rig.writer.stop()
    rig.sender.stop()
    marker = _publish_marker(rig)
    converged = marker is not None and _wait_caught_up(rig, marker)
    if rig.reader is not None:
        rig.reader.stop()  # its lookups of deleted keys would read MongoDB
    expected, problems = read_collection(rig.collection, rig.key_field)
    for problem in problems:
        rig.check(False, f"collection: {problem}")
    absent = rig.writer.ever_written | rig.absent_keys
    digests = [
        compare_replica(rig.http, name, url, expected, absent)
        for name, url in rig.replica_urls().items()
    ]
    if converged and all(d.equal for d in digests):
        rig.result.converge_s = round(time.monotonic() - stopped, 2)
    _verdict(rig, digests)
    _shared_checks(rig)


def _publish_marker(rig: Rig) -> Seen | None:
    assert rig.writer is not None and rig.observer is not None
    deadline = time.monotonic() + rig.profile.converge_timeout_s
    while time.monotonic() < deadline:
        if not any(child.alive for child in rig.fleet.watchers.values()):
            rig.check(False, "every watcher has exited: nothing can publish the marker")
            return None
        since = rig.observer.count()
        rev = rig.writer.next_rev()
        rig.collection.replace_one(
            {rig.key_field: MARKER_KEY},
            with_key({"rev": rev}, rig.key_field, MARKER_KEY),
            upsert=True,
        )
        rig.writer.record_write(MARKER_KEY, rev)
        seen = rig.observer.wait_for(
            _marker(rev),
            timeout=min(5.0, max(0.1, deadline - time.monotonic())),
            since=since,
        )
        if seen is not None:
            return seen
    rig.check(False, "no watcher published the settle marker before the deadline")
    return None


def _wait_caught_up(rig: Rig, marker: Seen) -> bool:
    assert marker.seq is not None
    deadline = time.monotonic() + rig.profile.converge_timeout_s
    behind: dict[str, Any] = {}
    while time.monotonic() < deadline:
        behind = {}
        for name, url in rig.replica_urls().items():
            health = cache_health(rig.http, url)
            if (
                health is None
                or not health.get("change_stream_active")
                or (health.get("last_seq") or 0) < marker.seq
            ):
                behind[name] = health
        if not behind:
            return True
        time.sleep(0.1)
    for name, health in behind.items():
        rig.check(False, f"{name} never caught up with marker seq {marker.seq}: {health}")
    return False


def _verdict(rig: Rig, digests: list[ReplicaDigest]) -> None:
    for d in digests:
        if not d.equal:
            rig.result.divergences += 1
            rig.result.violations.append(d.describe())
    rig.note("collection_size", digests[0].expected_size if digests else 0)


def _shared_checks(rig: Rig) -> None:
    assert rig.writer is not None and rig.observer is not None and rig.sender is not None
    messages = rig.observer.snapshot()
    for violation in ordering_violations(messages, breaks=rig.seq_breaks):
        rig.check(False, f"channel: {violation}")
    for violation in rig.sender.violations:
        rig.check(False, violation)
    rig.check(rig.sender.accepted > 0, "no blob event for a pinned config was accepted at all")
    rig.note("events_accepted", rig.sender.accepted)
    if rig.sender.retried_503:
        rig.note("events_retried_after_503", rig.sender.retried_503)
    rig.result.max_lag_s = _round(max_publish_lag(messages, rig.writer.written_at))
    reasons: Counter[str] = Counter()
    for name in rig.fleet.replicas:
        reasons.update(rig.resyncs(name))
    rig.result.resyncs = sum(reasons.values())
    rig.note("resync_reasons", dict(sorted(reasons.items())))
    broadcasts = Counter(m.reason for m in messages if m.kind == "resync" and not m.injected)
    if broadcasts:
        rig.note("broadcast_resyncs", dict(sorted(broadcasts.items(), key=str)))
    _consistency_checks(rig)
    rig.note("writes", sum(rig.writer.ops.values()))
    if rig.writer.errors:
        rig.note("write_errors", dict(rig.writer.errors))
    for child in [*rig.fleet.watchers.values(), *rig.fleet.replicas.values()]:
        rig.check(child.alive, f"{child.name} is not running at the end:\n{_tail(child)}")
        text = child.log_text()
        if "Traceback" in text:
            at = text.index("Traceback")
            rig.check(False, f"{child.name} logged a traceback:\n{text[at : at + _LOG_TAIL]}")


def _consistency_checks(rig: Rig) -> None:
    """Monotonic reads, bounded staleness and full reloads (module docstring)."""
    assert rig.writer is not None
    reads = rig.reader.snapshot() if rig.reader is not None else []
    t0 = rig.started_wall
    backwards = monotonic_violations(reads, t0=t0)
    stale = stale_reads(reads, rig.writer.writes(), bound_s=rig.staleness_bound_s, t0=t0)
    rig.result.reads = len(reads)
    rig.result.monotonic = len(backwards)
    rig.result.stale_reads = len(stale)
    rig.result.violations.extend(f"monotonic reads: {v}" for v in backwards[:_SHOWN])
    rig.result.violations.extend(f"stale read: {v}" for v in stale[:_SHOWN])
    unanswered = Counter(r.status for r in reads if r.status not in (200, 404))
    if unanswered:
        rig.note("reads_not_judged", dict(sorted(unanswered.items())))
    rig.result.full_reloads = sum(rig.full_reloads(name) for name in rig.fleet.replicas)


def _marker(rev: int) -> Callable[[Seen], bool]:
    return lambda m: m.key == MARKER_KEY and m.rev == rev and not m.injected


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _tail(child: Child) -> str:
    return child.log_text()[-_LOG_TAIL:]
