"""Read everything ``scc inspect`` shows from Redis and assemble one :class:`Snapshot`.

Three round trips: one pipeline for the singletons (``TIME``, lease, epoch, seq, resume
token, ``PUBSUB NUMSUB``, both streams), then ``SCAN`` over the heartbeat patterns and one
pipeline of ``HGETALL``, then the primary (:mod:`scc.primary`). Invariant: a key that
holds something unexpected (wrong type, unparsable number) becomes an ``unreadable``
problem naming the key, never an exception; only failing to talk to Redis at all raises
(redis-py errors, translated by the caller).
Read-only: nothing here writes to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from scc.judging import judge_fleet, judge_replica, judge_watcher
from scc.primary import read_primary
from scc.snapshot import (
    Accepted,
    Channel,
    DeadLetter,
    DeadLetters,
    Leader,
    Problem,
    Replica,
    Resume,
    Rules,
    Snapshot,
    Watcher,
)
from shared.channels import sharded
from shared.keys import Keys
from shared.status import ReplicaStatus, WatcherStatus

#: How many dead-lettered events ``scc inspect`` shows.
INSPECT_DLQ_COUNT = 5


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _number(value: Any, cast: type[int] | type[float]) -> Any:
    if value is None or value == b"" or value == "":
        return None
    try:
        return cast(_text(value))
    except ValueError:
        return None


def _bad_data(name: str, result: Any, problems: list[Problem]) -> bool:
    """True (and a problem recorded) if ``result`` is a WRONGTYPE error for key ``name``.

    Any other error in a pipeline reply (NOPERM from an ACL, LOADING, ...) is about the
    server or our rights, not the data: it is raised, and the command fails in one line,
    rather than turning every key into "unreadable" and the namespace into "empty".
    """
    if not isinstance(result, redis.RedisError):
        return False
    if isinstance(result, redis.ResponseError) and str(result).startswith("WRONGTYPE"):
        problems.append(Problem(name, "unreadable", str(result)))
        return True
    raise result


class _Reader:
    """Pulls one pipeline result at a time; a wrong-typed or malformed key becomes a problem."""

    def __init__(self, results: list[Any], names: list[str]) -> None:
        self._results = iter(zip(names, results, strict=True))
        self.problems: list[Problem] = []

    def next(self) -> Any:
        name, result = next(self._results)
        return None if _bad_data(name, result, self.problems) else result

    def integer(self) -> int | None:
        name, result = next(self._results)
        if _bad_data(name, result, self.problems):
            return None
        value: int | None = _number(result, int)
        if result is not None and value is None:
            self.problems.append(Problem(name, "unreadable", f"not an integer: {_text(result)!r}"))
        return value


def read_resume(raw: dict[Any, Any], now: float) -> Resume | None:
    """The resume hash as written by ``SAVE_TOKEN``, or ``None`` when absent."""
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    saved_at: float | None = _number(fields.get("saved_at"), float)
    cluster_time: float | None = _number(fields.get("cluster_time"), float)
    return Resume(
        token=fields.get("token", ""),
        epoch=_number(fields.get("epoch"), int),
        saved_by=fields.get("saved_by", ""),
        saved_at=saved_at,
        age_s=None if saved_at is None else max(0.0, now - saved_at),
        cluster_time=cluster_time,
        cluster_time_age_s=None if cluster_time is None else max(0.0, now - cluster_time),
    )


def read_dead_letters(stream: str, length: int, entries: list[Any]) -> DeadLetters:
    """``XREVRANGE`` entries (newest first) as :class:`DeadLetter` rows."""
    newest: list[DeadLetter] = []
    for entry_id, raw_fields in entries or []:
        ident = _text(entry_id)
        fields = {_text(k): _text(v) for k, v in (raw_fields or {}).items()}
        millis = _number(ident.split("-", 1)[0], int)
        newest.append(
            DeadLetter(
                id=ident,
                at=None if millis is None else millis / 1000,
                reason=fields.pop("reason", ""),
                fields=fields,
            )
        )
    return DeadLetters(stream=stream, length=length, newest=newest)


def read_token(client: redis.Redis, keys: Keys) -> tuple[Resume | None, float]:
    """The resume token (``None`` when absent) and the Redis clock it was read at."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(keys.resume)
    (seconds, micros), raw = pipe.execute()
    now = float(seconds) + float(micros) / 1e6
    return read_resume(raw, now), now


@dataclass(frozen=True, slots=True)
class _Singletons:
    now: float
    leader: Leader | None
    epoch: int | None
    seq: int | None
    resume: Resume | None
    subscribers: int
    dlq: DeadLetters
    accepted: Accepted
    problems: list[Problem]


def _read_singletons(client: redis.Redis, keys: Keys, dlq_count: int) -> _Singletons:
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.get(keys.leader)
    pipe.pttl(keys.leader)
    pipe.get(keys.epoch)
    pipe.get(keys.seq)
    pipe.hgetall(keys.resume)
    if sharded(client):  # a shard channel in Redis Cluster (shared.channels)
        pipe.pubsub_shardnumsub(keys.invalidations)
    else:
        pipe.pubsub_numsub(keys.invalidations)
    pipe.xlen(keys.events_dlq)
    pipe.xrevrange(keys.events_dlq, count=dlq_count)
    pipe.xlen(keys.events_accepted)
    names = [
        "TIME", keys.leader, keys.leader, keys.epoch, keys.seq, keys.resume,
        keys.invalidations, keys.events_dlq, keys.events_dlq, keys.events_accepted,
    ]  # fmt: skip
    read = _Reader(pipe.execute(raise_on_error=False), names)
    seconds, micros = read.next()
    now = float(seconds) + float(micros) / 1e6
    leader_raw, pttl = read.next(), read.next()
    epoch, seq = read.integer(), read.integer()
    resume = read_resume(read.next() or {}, now)
    numsub = read.next() or []
    dlq_length, dlq_entries, accepted_length = read.next(), read.next(), read.next()
    leader = None
    if leader_raw is not None:
        lease_left = int(pttl) if isinstance(pttl, int) and pttl >= 0 else None
        leader = Leader(instance_id=_text(leader_raw), lease_ms_left=lease_left)
    return _Singletons(
        now=now,
        leader=leader,
        epoch=epoch,
        seq=seq,
        resume=resume,
        subscribers=int(numsub[0][1]) if numsub else 0,
        dlq=read_dead_letters(keys.events_dlq, int(dlq_length or 0), dlq_entries or []),
        accepted=Accepted(stream=keys.events_accepted, length=int(accepted_length or 0)),
        problems=read.problems,
    )


def _heartbeats(
    client: redis.Redis, pattern: str, problems: list[Problem]
) -> list[tuple[str, dict[Any, Any] | None]]:
    """Every heartbeat key matching ``pattern``: its hash, or ``None`` if it is unreadable."""
    names = sorted(_text(k) for k in client.scan_iter(match=pattern, count=500))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    found: list[tuple[str, dict[Any, Any] | None]] = []
    for name, raw in zip(names, pipe.execute(raise_on_error=False) if names else [], strict=True):
        if _bad_data(name, raw, problems):
            found.append((name, None))
        elif raw:  # empty: the hash expired between SCAN and HGETALL
            found.append((name, raw))
    return found


def collect(
    client: redis.Redis,
    keys: Keys,
    rules: Rules,
    *,
    redis_url: str,
    dlq_count: int = INSPECT_DLQ_COUNT,
) -> Snapshot:
    """Read and judge the whole deployment under ``keys.namespace``."""
    one = _read_singletons(client, keys, dlq_count)
    problems = list(one.problems)
    leader_id = None if one.leader is None else one.leader.instance_id
    watchers: list[Watcher] = []
    watcher_keys = _heartbeats(client, keys.watcher_pattern, problems)
    for name, raw in watcher_keys:
        if raw is None:
            continue
        watcher, found = judge_watcher(
            WatcherStatus.from_hash(raw),
            instance_id=keys.instance_of(name),
            leader_id=leader_id,
            now=one.now,
            rules=rules,
        )
        watchers.append(watcher)
        problems += found
    watchers.sort(key=lambda w: (not w.holds_lease, w.instance_id))
    replicas: list[Replica] = []
    replica_keys = _heartbeats(client, keys.replica_pattern, problems)
    for name, raw in replica_keys:
        if raw is None:
            continue
        replica, found = judge_replica(
            ReplicaStatus.from_hash(raw),
            instance_id=keys.instance_of(name),
            seq=one.seq,
            now=one.now,
            rules=rules,
        )
        replicas.append(replica)
        problems += found
    channel = Channel(
        name=keys.invalidations,
        subscribers=one.subscribers,
        registered_replicas=len(replicas),
        difference=one.subscribers - len(replicas),
    )
    deployed = bool(one.leader or watcher_keys or replica_keys)
    fleet = judge_fleet(leader=one.leader, watchers=watchers, channel=channel, deployed=deployed)
    problems = fleet + problems
    return Snapshot(
        namespace=keys.namespace,
        redis_url=redis_url,
        taken_at=one.now,
        rules=rules,
        deployed=deployed,
        in_sync=not problems,
        leader=one.leader,
        epoch=one.epoch,
        seq=one.seq,
        resume=one.resume,
        watchers=watchers,
        replicas=replicas,
        channel=channel,
        dlq=one.dlq,
        accepted=one.accepted,
        redis=read_primary(client, keys, now=one.now, replicas=replicas),
        problems=problems,
    )
