"""The in-sync rules of scc.judging, on hand-made heartbeat hashes and a fixed clock."""

from __future__ import annotations

import pytest

from scc.judging import judge_fleet, judge_replica, judge_watcher
from scc.snapshot import Channel, Leader, Rules
from shared.status import ReplicaStatus, WatcherStatus

NOW = 1_800_000_000.0
RULES = Rules.from_settings(heartbeat_interval_ms=1000, max_await_ms=500, lag_tolerance=1)


def replica(**fields: object) -> ReplicaStatus:
    base: dict[str, object] = {
        "instance_id": "r-1",
        "ready": True,
        "change_stream_active": True,
        "cache_size": 10,
        "last_seq": 100,
        "epoch": 3,
        "warmed_at": NOW - 60,
        "last_message_at": NOW - 0.5,
        "updated_at": NOW - 0.4,
    }
    base.update(fields)
    return ReplicaStatus(**base)  # type: ignore[arg-type]


def marks_of(status: ReplicaStatus, seq: int | None = 100) -> list[str]:
    judged, problems = judge_replica(status, instance_id="r-1", seq=seq, now=NOW, rules=RULES)
    assert judged.marks == [p.mark for p in problems]
    assert all(p.subject == "replica r-1" for p in problems)
    return judged.marks


def test_thresholds_are_three_heartbeats() -> None:
    """Silent and lag grace are 3 heartbeat intervals; stall is 3 x max(beat, max await)."""
    rules = Rules.from_settings(heartbeat_interval_ms=200, max_await_ms=1000, lag_tolerance=0)
    assert rules.silent_after_s == pytest.approx(0.6)
    assert rules.lag_grace_s == pytest.approx(0.6)
    assert rules.stall_after_s == pytest.approx(3.0)


def test_up_to_date_replica_has_no_marks() -> None:
    """A ready replica at seq with a fresh hash and fresh messages is in sync."""
    assert marks_of(replica()) == []


def test_stale_hash_is_silent() -> None:
    """A hash not rewritten for more than 3 heartbeats marks the replica silent."""
    assert marks_of(replica(updated_at=NOW - 3.5)) == ["silent"]
    assert marks_of(replica(updated_at=NOW - 2.9)) == []


def test_hash_without_updated_at_is_silent() -> None:
    """A hash that never says when it was written cannot vouch for anything."""
    assert "silent" in marks_of(replica(updated_at=None))


def test_not_ready_replica_is_marked_and_not_judged_for_lag() -> None:
    """A warming replica is marked not-ready only, however far behind it is."""
    assert marks_of(replica(ready=False, last_seq=None), seq=500) == ["not-ready"]


def test_trailing_replica_without_messages_is_lagging() -> None:
    """Behind seq by more than the tolerance and no message for over 3 beats: lagging."""
    marks = marks_of(replica(last_seq=90, last_message_at=NOW - 10, updated_at=NOW - 0.2))
    assert marks == ["lagging"]


def test_trailing_replica_with_inactive_stream_is_lagging() -> None:
    """Behind seq and reporting change_stream_active=0 is lagging even with fresh messages."""
    assert marks_of(replica(last_seq=90, change_stream_active=False)) == ["lagging"]


def test_trailing_replica_still_hearing_messages_is_not_lagging() -> None:
    """Seq moved on since its last hash, but it hears messages: not judged (hash is old)."""
    assert marks_of(replica(last_seq=40), seq=100) == []


def test_lag_within_tolerance_is_not_lagging() -> None:
    """Trailing by exactly the tolerance is accepted even with no recent message."""
    assert marks_of(replica(last_seq=99, last_message_at=NOW - 60)) == []
    assert marks_of(replica(last_seq=98, last_message_at=NOW - 60)) == ["lagging"]


def test_message_gap_is_measured_at_the_replicas_report() -> None:
    """The gap is updated_at - last_message_at, so an old hash alone does not make it lag."""
    judged, _ = judge_replica(
        replica(last_seq=90, last_message_at=NOW - 2.5, updated_at=NOW - 2.4),
        instance_id="r-1",
        seq=100,
        now=NOW,
        rules=RULES,
    )
    assert judged.marks == []
    assert judged.message_gap_s == pytest.approx(0.1)
    assert judged.seq_behind == 10


def test_never_messaged_replica_falls_back_to_warm_up_time() -> None:
    """Without last_message_at, the gap counts from warmed_at (then started_at)."""
    marks = marks_of(replica(last_seq=90, last_message_at=None, warmed_at=NOW - 30))
    assert marks == ["lagging"]


def test_silent_and_lagging_combine() -> None:
    """A replica can be both silent and lagging; both marks are listed."""
    status = replica(last_seq=50, last_message_at=NOW - 100, updated_at=NOW - 50)
    assert marks_of(status) == ["silent", "lagging"]


def test_unknown_seq_judges_no_lag() -> None:
    """With no {ns}:seq (nothing published yet), no replica can be judged behind."""
    judged, problems = judge_replica(replica(), instance_id="r-1", seq=None, now=NOW, rules=RULES)
    assert judged.seq_behind is None and problems == []


def watcher(**fields: object) -> WatcherStatus:
    base: dict[str, object] = {
        "instance_id": "w-1",
        "role": "leader",
        "epoch": 3,
        "last_empty_batch_at": NOW - 0.3,
        "started_at": NOW - 600,
        "updated_at": NOW - 0.2,
    }
    base.update(fields)
    return WatcherStatus(**base)  # type: ignore[arg-type]


def test_lease_holder_with_a_recent_batch_is_fine() -> None:
    """The lease holder whose stream answered recently has no marks and a stream lag."""
    judged, problems = judge_watcher(watcher(), instance_id="w-1", leader_id="w-1", now=NOW,
                                     rules=RULES)  # fmt: skip
    assert problems == [] and judged.holds_lease
    assert judged.stream_lag_s == pytest.approx(0.3)


def test_lease_holder_whose_stream_is_quiet_is_stalled() -> None:
    """No batch from the change stream for over 3 x max(beat, max await) is stalled."""
    status = watcher(last_empty_batch_at=NOW - 5, last_event_at=NOW - 7)
    judged, _ = judge_watcher(status, instance_id="w-1", leader_id="w-1", now=NOW, rules=RULES)
    assert judged.marks == ["stalled"]


def test_standby_is_never_stalled_and_has_no_stream_lag() -> None:
    """Only the lease holder follows the change stream, so only it can stall."""
    status = watcher(role="standby", last_empty_batch_at=None)
    judged, _ = judge_watcher(status, instance_id="w-2", leader_id="w-1", now=NOW, rules=RULES)
    assert judged.marks == [] and judged.stream_lag_s is None and not judged.holds_lease


def test_watcher_with_a_stale_hash_is_silent() -> None:
    """A watcher hash older than 3 heartbeats is silent."""
    status = watcher(role="standby", updated_at=NOW - 4)
    judged, problems = judge_watcher(status, instance_id="w-2", leader_id=None, now=NOW,
                                     rules=RULES)  # fmt: skip
    assert judged.marks == ["silent"] and problems[0].subject == "watcher w-2"


def channel(subscribers: int, registered: int) -> Channel:
    return Channel("{scc}:invalidations", subscribers, registered, subscribers - registered)


def test_fleet_without_leader_is_a_problem() -> None:
    """Something deployed but nobody holding the lease is reported as no-leader."""
    problems = judge_fleet(leader=None, watchers=[], channel=channel(0, 0), deployed=True)
    assert [p.mark for p in problems] == ["no-leader"]


def test_leader_without_watcher_hash_is_a_problem() -> None:
    """A lease holder that writes no heartbeat hash is reported."""
    problems = judge_fleet(
        leader=Leader("w-9", 4000), watchers=[], channel=channel(0, 0), deployed=True
    )
    assert [p.mark for p in problems] == ["leader-unregistered"]


def test_subscriber_difference_is_a_problem_both_ways() -> None:
    """Fewer subscribers than replicas, or more, is reported with the difference."""
    judged, _ = judge_watcher(watcher(), instance_id="w-1", leader_id="w-1", now=NOW, rules=RULES)
    leader = Leader("w-1", 4000)
    fewer = judge_fleet(leader=leader, watchers=[judged], channel=channel(1, 3), deployed=True)
    more = judge_fleet(leader=leader, watchers=[judged], channel=channel(4, 3), deployed=True)
    assert [p.mark for p in fewer] == ["subscribers"] and "2 registered" in fewer[0].detail
    assert [p.mark for p in more] == ["subscribers"] and "1 unregistered" in more[0].detail
    assert judge_fleet(leader=leader, watchers=[judged], channel=channel(3, 3), deployed=True) == []


def test_nothing_deployed_has_no_fleet_problems() -> None:
    """An empty namespace is not judged (the CLI exits 2 for it instead)."""
    assert judge_fleet(leader=None, watchers=[], channel=channel(0, 0), deployed=False) == []
