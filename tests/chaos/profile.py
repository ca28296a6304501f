"""How hard and how long each scenario pushes: the ``short`` profile (test command) and ``long``.

Why a module of its own: the pytest entry, ``python -m tests.chaos`` and every scenario read
their sizes from one :class:`Profile`, so "short" means the same thing everywhere and the
long run differs only in numbers, never in code paths.

Timings of the fleet (:data:`FLEET_ENV`) are short so a scenario takes seconds: a 1 s
leader lease, 200 ms heartbeats (a replica calls the stream inactive after 600 ms), 100 ms
change-stream waits, and a 2 s staleness bound, after which an inactive replica answers
lookups by reading MongoDB (small, so the chaos suite's bounded-staleness check --
``SCC_MAX_STALENESS_S`` + 1 s -- has teeth within a short scenario).
``SCC_MAX_MESSAGE_BYTES`` is at its minimum so the writer's padded documents travel
key-only and exercise the refetch path. HMAC signing and the
ingest token are on, as in a hardened deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Shared secrets of every chaos fleet (test-only values).
HMAC_KEY: Final = "chaos-hmac-key-0123456789abcdef"
INGEST_TOKEN: Final = "chaos-ingest-token-0123456789"
NAMESPACE: Final = "chaos"
HEARTBEAT_MS: Final = 200
LEADER_TTL_MS: Final = 1000
MAX_STALENESS_S: Final = 2.0

FLEET_ENV: Final[dict[str, str]] = {
    "SCC_LEADER_TTL_MS": str(LEADER_TTL_MS),
    "SCC_HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS),
    "SCC_MAX_AWAIT_MS": "100",
    "SCC_TOKEN_SAVE_INTERVAL_MS": "200",
    "SCC_MAX_STALENESS_S": str(MAX_STALENESS_S),
    "SCC_NEGATIVE_TTL_MS": "2000",
    "SCC_RESYNC_JITTER_MS": "50",
    "SCC_MAX_MESSAGE_BYTES": "4096",
    "SCC_MONGODB_TIMEOUT_MS": "3000",
    "SCC_MESSAGE_HMAC_KEY": HMAC_KEY,
    "SCC_INGEST_TOKEN": INGEST_TOKEN,
    "SCC_LOG_LEVEL": "info",
}


@dataclass(frozen=True, slots=True)
class Profile:
    """Sizes and durations of one chaos run (see the module docstring)."""

    name: str
    #: Writer: operations per second (in bursts) and the churned key space.
    writer_ops_per_s: float
    key_space: int
    #: Configs the writer never touches; blob events for them must always be accepted.
    pinned: int
    #: Seconds of writing before (and between) injected faults.
    burst_s: float
    #: 1: leader SIGKILLs in one run.
    leader_kills: int
    #: 2: how long past the lease the leader stays stopped.
    pause_beyond_lease_s: float
    #: 4: how long a replica stays stopped (past 3 heartbeats = 0.6 s).
    replica_pause_s: float
    #: 6: how long every watcher is down.
    watcher_outage_s: float
    #: 7: generated payloads published on the channel, and HTTP fuzz examples.
    bad_payloads: int
    fuzz_examples: int
    #: 8: configs created and immediately sent their first blob event.
    read_your_writes: int
    #: 12: failed resubscriptions every replica must go through, and the longest outage.
    redis_outage_reconnects: int
    redis_outage_max_s: float
    #: Deadline for the fleet to settle after writes stop (a wait, not a speed assertion).
    converge_timeout_s: float


SHORT: Final = Profile(
    name="short",
    writer_ops_per_s=60.0,
    key_space=120,
    pinned=6,
    burst_s=0.8,
    leader_kills=3,
    pause_beyond_lease_s=1.0,
    replica_pause_s=1.2,
    watcher_outage_s=3.0,
    bad_payloads=400,
    fuzz_examples=120,
    read_your_writes=50,
    redis_outage_reconnects=10,
    redis_outage_max_s=90.0,
    converge_timeout_s=45.0,
)

LONG: Final = Profile(
    name="long",
    writer_ops_per_s=120.0,
    key_space=600,
    pinned=20,
    burst_s=2.0,
    leader_kills=10,
    pause_beyond_lease_s=3.0,
    replica_pause_s=3.0,
    watcher_outage_s=20.0,
    bad_payloads=10_000,
    fuzz_examples=1500,
    read_your_writes=500,
    redis_outage_reconnects=100,
    redis_outage_max_s=600.0,
    converge_timeout_s=120.0,
)

PROFILES: Final = {p.name: p for p in (SHORT, LONG)}
