"""What ``scc inspect`` saw in Redis at one instant: a tree of frozen dataclasses, pure data.

Invariant: this tree *is* the ``--json`` document. Field names and nesting here are the
stable shape described by ``scc/inspect.schema.json`` (``additionalProperties: false``
everywhere, pinned by a test), so a renamed field is a schema change and must bump
:data:`SCHEMA_VERSION`. Times are unix seconds (floats); ``*_age_s`` fields are measured
against the Redis server's clock (``TIME``) when the snapshot was taken, so a laptop with
a wrong clock does not call a healthy replica silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

#: Version of the ``--json`` document; bumped on any incompatible change to its shape.
SCHEMA_VERSION: Final = 3

#: Every mark a replica can carry (see :mod:`scc.judging` for the exact rules).
REPLICA_MARKS: Final = ("silent", "lagging", "not-ready")
#: Every mark a watcher can carry.
WATCHER_MARKS: Final = ("silent", "stalled")
#: Every mark a :class:`Problem` can carry: the above plus those of no single process.
PROBLEM_MARKS: Final = (
    "silent", "lagging", "not-ready", "stalled",
    "no-leader", "leader-unregistered", "subscribers", "unreadable",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rules:
    """The thresholds a snapshot was judged with (echoed in the document)."""

    heartbeat_interval_s: float
    """How often watchers and replicas rewrite their hash and the leader heartbeats."""
    silent_after_s: float
    """A process whose hash is older than this is marked ``silent`` (3 heartbeats)."""
    lag_tolerance: int
    """A replica may trail ``{ns}:seq`` by this many messages without being judged."""
    lag_grace_s: float
    """How long a trailing replica may have gone without a message (3 heartbeats)."""
    stall_after_s: float
    """The leader's change stream must return a batch at least this often."""

    @classmethod
    def from_settings(
        cls, *, heartbeat_interval_ms: int, max_await_ms: int, lag_tolerance: int
    ) -> Rules:
        """Derive every threshold from the deployment's timing settings."""
        beat = heartbeat_interval_ms / 1000
        return cls(
            heartbeat_interval_s=beat,
            silent_after_s=3 * beat,
            lag_tolerance=lag_tolerance,
            lag_grace_s=3 * beat,
            stall_after_s=3 * max(beat, max_await_ms / 1000),
        )


@dataclass(frozen=True, slots=True)
class Leader:
    """``{ns}:leader`` and its lease."""

    instance_id: str
    lease_ms_left: int | None
    """``PTTL`` of the lease key; ``None`` if the key has no expiry (it always should)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """``{ns}:resume``: where the next leader's change stream starts."""

    token: str
    epoch: int | None
    """Epoch (leader term) of the watcher that saved it."""
    saved_by: str
    saved_at: float | None
    age_s: float | None
    """Seconds since it was saved."""
    cluster_time: float | None
    """MongoDB cluster time the token points at (unix seconds), if the watcher recorded it."""
    cluster_time_age_s: float | None


@dataclass(frozen=True, slots=True)
class Watcher:
    """One ``{ns}:watcher:{id}`` hash, judged."""

    instance_id: str
    role: str
    holds_lease: bool
    """True when ``{ns}:leader`` names this instance."""
    epoch: int | None
    stream_lag_s: float | None
    """Lease holder only: seconds since its change stream last returned a batch."""
    last_event_at: float | None
    last_event_age_s: float | None
    last_empty_batch_at: float | None
    last_empty_batch_age_s: float | None
    events_published: int
    resyncs: int
    elections: int
    poison_documents: int
    """Documents it could not carry in a message (published key-only)."""
    last_poison: str
    last_error: str
    last_error_at: float | None
    started_at: float | None
    updated_at: float | None
    heartbeat_age_s: float | None
    version: str
    marks: list[str]


@dataclass(frozen=True, slots=True)
class Replica:
    """One ``{ns}:replica:{id}`` hash, judged."""

    instance_id: str
    ready: bool
    change_stream_active: bool
    cache_size: int
    last_seq: int | None
    seq_behind: int | None
    """``{ns}:seq`` minus ``last_seq`` (the hash may be up to one heartbeat old)."""
    epoch: int | None
    warmed_at: float | None
    last_message_at: float | None
    last_message_age_s: float | None
    message_gap_s: float | None
    """At its last report: seconds since it last heard anything (message or warm-up)."""
    reported_lag_s: float | None
    """The replica's own ``lag_seconds`` figure, as it reported it."""
    resyncs: int
    started_at: float | None
    updated_at: float | None
    heartbeat_age_s: float | None
    version: str
    marks: list[str]


@dataclass(frozen=True, slots=True)
class Channel:
    """``PUBSUB NUMSUB {ns}:invalidations`` against the registered replicas."""

    name: str
    subscribers: int
    registered_replicas: int
    difference: int
    """``subscribers - registered_replicas``: <0 some replica is not listening, >0 an
    unregistered subscriber (a replica whose heartbeat stopped, or a debugging client)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of ``{ns}:events:dlq``."""

    id: str
    at: float | None
    """When it was dead-lettered (from the stream id)."""
    reason: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """``{ns}:events:dlq``: its length and newest entries."""

    stream: str
    length: int
    newest: list[DeadLetter]


@dataclass(frozen=True, slots=True)
class Accepted:
    """``{ns}:events:accepted``: its length."""

    stream: str
    length: int


@dataclass(frozen=True, slots=True)
class RedisPrimary:
    """Which Redis holds the data: the primary the sentinels name, and the last failover."""

    via_sentinel: bool
    """True when the URL is ``redis+sentinel://`` (the primary is asked of the sentinels)."""
    master_name: str | None
    address: str | None
    """``host:port`` of the primary the sentinels name now (None without Sentinel)."""
    known_replicas: int | None
    """Replicas of that primary the sentinels know of."""
    last_failover_at: float | None
    """When a process last heard ``+switch-master`` (``{ns}:failover``), if ever."""
    last_failover_age_s: float | None
    failover_from: str | None
    """The primary before that switch."""
    not_resynced_since: list[str]
    """Replicas whose last reload (``warmed_at``) predates the last failover."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the snapshot is not in sync; ``subject`` names who."""

    subject: str
    mark: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything ``scc inspect`` reports, as one JSON-ready tree."""

    schema_version: int = field(default=SCHEMA_VERSION)
    namespace: str
    redis_url: str
    """The Redis URL, credentials redacted."""
    taken_at: float
    rules: Rules
    deployed: bool
    """False when no leader, watcher or replica key exists under the namespace."""
    in_sync: bool
    """True when ``problems`` is empty (exit status 0)."""
    leader: Leader | None
    epoch: int | None
    seq: int | None
    resume: Resume | None
    watchers: list[Watcher]
    replicas: list[Replica]
    channel: Channel
    dlq: DeadLetters
    accepted: Accepted
    redis: RedisPrimary
    problems: list[Problem]
