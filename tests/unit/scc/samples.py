"""A hand-built snapshot with one of everything, for rendering and schema tests."""

from __future__ import annotations

from scc.judging import judge_fleet, judge_replica, judge_watcher
from scc.snapshot import (
    Accepted,
    Channel,
    DeadLetter,
    DeadLetters,
    Leader,
    RedisPrimary,
    Resume,
    Rules,
    Snapshot,
)
from shared.status import ReplicaStatus, WatcherStatus

NOW = 1_800_000_000.0
RULES = Rules.from_settings(heartbeat_interval_ms=1000, max_await_ms=1000, lag_tolerance=1)


def snapshot(*, markup_in_data: str = "[bold red]not markup[/]") -> Snapshot:
    """Leader w-1, a silent standby, an in-sync, a lagging and a silent replica, two DLQ rows."""
    leader = Leader(instance_id="w-1", lease_ms_left=4200)
    w1, p1 = judge_watcher(
        WatcherStatus(instance_id="w-1", role="leader", epoch=7, last_event_at=NOW - 2,
                      last_empty_batch_at=NOW - 0.4, events_published=41, updated_at=NOW - 0.1,
                      started_at=NOW - 900, version="0.1.0"),
        instance_id="w-1", leader_id="w-1", now=NOW, rules=RULES,
    )  # fmt: skip
    w2, p2 = judge_watcher(
        WatcherStatus(instance_id="w-2", role="standby", epoch=6, updated_at=NOW - 9,
                      last_error=f"ConnectionFailure {markup_in_data}", last_error_at=NOW - 30),
        instance_id="w-2", leader_id="w-1", now=NOW, rules=RULES,
    )  # fmt: skip
    replicas, problems = [], p1 + p2
    for name, last_seq, heard, updated in [
        ("r-ok", 41, NOW - 0.3, NOW - 0.2),
        ("r-lag", 30, NOW - 20, NOW - 0.2),
        ("r-silent", 41, NOW - 12, NOW - 11),
    ]:
        judged, found = judge_replica(
            ReplicaStatus(instance_id=name, ready=True, change_stream_active=True, cache_size=9,
                          last_seq=last_seq, epoch=7, warmed_at=NOW - 300, last_message_at=heard,
                          updated_at=updated, version="0.1.0"),
            instance_id=name, seq=41, now=NOW, rules=RULES,
        )  # fmt: skip
        replicas.append(judged)
        problems += found
    channel = Channel("{scc}:invalidations", 2, 3, -1)
    problems = (
        judge_fleet(leader=leader, watchers=[w1, w2], channel=channel, deployed=True) + problems
    )
    return Snapshot(
        namespace="scc",
        redis_url="redis://:***@redis:6379/0",
        taken_at=NOW,
        rules=RULES,
        deployed=True,
        in_sync=not problems,
        leader=leader,
        epoch=7,
        seq=41,
        resume=Resume(
            token='{"_data":"8263"}',
            epoch=7,
            saved_by="w-1",
            saved_at=NOW - 0.8,
            age_s=0.8,
            cluster_time=NOW - 1.1,
            cluster_time_age_s=1.1,
        ),  # fmt: skip
        watchers=[w1, w2],
        replicas=replicas,
        channel=channel,
        dlq=DeadLetters(
            stream="{scc}:events:dlq",
            length=12,
            newest=[
                DeadLetter("1800000000000-1", NOW, markup_in_data, {"container": "landing"}),
                DeadLetter("1799999999000-0", NOW - 1, "no_matching_config", {}),
            ],
        ),
        accepted=Accepted(stream="{scc}:events:accepted", length=1000),
        redis=RedisPrimary(
            via_sentinel=True,
            master_name="sccmaster",
            address="10.0.0.2:6379",
            known_replicas=2,
            last_failover_at=NOW - 60,
            last_failover_age_s=60.0,
            failover_from="10.0.0.1:6379",
            not_resynced_since=["r-lag"],
        ),  # fmt: skip
        problems=problems,
    )
