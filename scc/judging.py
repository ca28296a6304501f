"""The rules that decide whether a watcher, a replica or the channel is out of sync.

Pure functions over parsed heartbeat hashes and a clock reading, so every rule is pinned
by unit tests without Redis. The rules (also printed by ``scc inspect --help``)::

    silent     (replica, watcher) its hash was last rewritten more than silent_after_s
               (3 heartbeat intervals) ago. Its TTL deletes it later; from then on it can
               only show up as a subscriber-count difference.
    not-ready  (replica) it reports ready=0: warming up or reloading.
    lagging    (replica, ready) last_seq trails {ns}:seq by more than lag_tolerance
               AND, at its last report, either change_stream_active was 0 or it had gone
               longer than lag_grace_s (3 heartbeat intervals) without any message. The
               leader publishes a heartbeat every interval, so a healthy replica never
               goes that long: trailing while hearing messages is only the hash being up
               to one heartbeat old while seq moves on, and is not judged.
    stalled    (lease holder) its change stream returned no batch (event or empty) for
               more than stall_after_s (3 x max(heartbeat interval, max await)).
    no-leader  something is deployed but nobody holds {ns}:leader.
    leader-unregistered  the lease holder writes no {ns}:watcher:{id} hash.
    subscribers  PUBSUB NUMSUB differs from the number of registered replicas.

Invariant: a process is judged only on what it reported, never on the clock of the
machine running ``scc`` (``now`` is the Redis server's ``TIME``).
"""

from __future__ import annotations

from scc.snapshot import Channel, Leader, Problem, Replica, Rules, Watcher
from shared.status import ReplicaStatus, WatcherStatus


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else max(0.0, now - then)


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _fmt(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def judge_replica(
    status: ReplicaStatus, *, instance_id: str, seq: int | None, now: float, rules: Rules
) -> tuple[Replica, list[Problem]]:
    """The replica as reported, with its marks, and one problem per mark."""
    subject = f"replica {instance_id}"
    problems: list[Problem] = []
    heartbeat_age = _age(now, status.updated_at)
    if heartbeat_age is None or heartbeat_age > rules.silent_after_s:
        problems.append(
            Problem(
                subject,
                "silent",
                f"last heartbeat {_fmt(heartbeat_age)} ago "
                f"(silent after {rules.silent_after_s:.1f} s)",
            )
        )
    if not status.ready:
        problems.append(Problem(subject, "not-ready", "reports ready=0 (warming up or reloading)"))
    behind = None if seq is None else seq - (status.last_seq or 0)
    heard = _latest(status.last_message_at, status.warmed_at, status.started_at)
    reported_at = status.updated_at if status.updated_at is not None else now
    gap = None if heard is None else max(0.0, reported_at - heard)
    if status.ready and behind is not None and behind > rules.lag_tolerance:
        if not status.change_stream_active:
            why = "and reports change_stream_active=0"
        elif gap is None or gap > rules.lag_grace_s:
            why = f"and had heard no message for {_fmt(gap)} at its last report"
        else:
            why = ""
        if why:
            problems.append(
                Problem(
                    subject,
                    "lagging",
                    f"last_seq {status.last_seq} is {behind} behind seq {seq} {why}",
                )
            )
    replica = Replica(
        instance_id=instance_id,
        ready=status.ready,
        change_stream_active=status.change_stream_active,
        cache_size=status.cache_size,
        last_seq=status.last_seq,
        seq_behind=behind,
        epoch=status.epoch,
        warmed_at=status.warmed_at,
        last_message_at=status.last_message_at,
        last_message_age_s=_age(now, status.last_message_at),
        message_gap_s=gap,
        reported_lag_s=status.lag_seconds,
        resyncs=status.resyncs,
        started_at=status.started_at,
        updated_at=status.updated_at,
        heartbeat_age_s=heartbeat_age,
        version=status.version,
        marks=[p.mark for p in problems],
    )
    return replica, problems


def judge_watcher(
    status: WatcherStatus, *, instance_id: str, leader_id: str | None, now: float, rules: Rules
) -> tuple[Watcher, list[Problem]]:
    """The watcher as reported, with its marks, and one problem per mark."""
    subject = f"watcher {instance_id}"
    problems: list[Problem] = []
    holds_lease = leader_id == instance_id
    heartbeat_age = _age(now, status.updated_at)
    if heartbeat_age is None or heartbeat_age > rules.silent_after_s:
        problems.append(
            Problem(
                subject,
                "silent",
                f"last heartbeat {_fmt(heartbeat_age)} ago "
                f"(silent after {rules.silent_after_s:.1f} s)",
            )
        )
    stream_lag = None
    if holds_lease:
        stream_lag = _age(
            now, _latest(status.last_event_at, status.last_empty_batch_at, status.started_at)
        )
        if stream_lag is not None and stream_lag > rules.stall_after_s:
            problems.append(
                Problem(
                    subject,
                    "stalled",
                    f"its change stream returned no batch for {_fmt(stream_lag)} "
                    f"(stalled after {rules.stall_after_s:.1f} s)",
                )
            )
    watcher = Watcher(
        instance_id=instance_id,
        role=status.role,
        holds_lease=holds_lease,
        epoch=status.epoch,
        stream_lag_s=stream_lag,
        last_event_at=status.last_event_at,
        last_event_age_s=_age(now, status.last_event_at),
        last_empty_batch_at=status.last_empty_batch_at,
        last_empty_batch_age_s=_age(now, status.last_empty_batch_at),
        events_published=status.events_published,
        resyncs=status.resyncs,
        elections=status.elections,
        poison_documents=status.poison_documents,
        last_poison=status.last_poison,
        last_error=status.last_error,
        last_error_at=status.last_error_at,
        started_at=status.started_at,
        updated_at=status.updated_at,
        heartbeat_age_s=heartbeat_age,
        version=status.version,
        marks=[p.mark for p in problems],
    )
    return watcher, problems


def judge_fleet(
    *, leader: Leader | None, watchers: list[Watcher], channel: Channel, deployed: bool
) -> list[Problem]:
    """Problems that belong to no single process: the lease and the channel."""
    problems: list[Problem] = []
    if not deployed:
        return problems
    if leader is None:
        problems.append(
            Problem(
                "leader",
                "no-leader",
                f"no watcher holds the lease ({len(watchers)} watcher(s) registered); "
                "nothing is following the change stream",
            )
        )
    elif not any(w.instance_id == leader.instance_id for w in watchers):
        problems.append(
            Problem(
                "leader",
                "leader-unregistered",
                f"{leader.instance_id} holds the lease but writes no watcher heartbeat",
            )
        )
    if channel.difference < 0:
        problems.append(
            Problem(
                "channel",
                "subscribers",
                f"{channel.subscribers} subscriber(s) on {channel.name} for "
                f"{channel.registered_replicas} registered replica(s): "
                f"{-channel.difference} registered replica(s) not listening",
            )
        )
    elif channel.difference > 0:
        problems.append(
            Problem(
                "channel",
                "subscribers",
                f"{channel.subscribers} subscriber(s) on {channel.name} for "
                f"{channel.registered_replicas} registered replica(s): "
                f"{channel.difference} unregistered subscriber(s) (a replica whose "
                "heartbeat stopped, or a debugging client)",
            )
        )
    return problems
