"""Every Redis key and channel name of one deployment, built from its namespace.

No other module builds a key by string concatenation: two deployments (or two tests)
sharing one Redis differ only in their namespace, and an operator reading this file
knows every key the system can touch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under ``namespace`` (see DESIGN.md, "Redis layout")."""

    namespace: str = "scc"

    def __post_init__(self) -> None:
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise ValueError(f"namespace must be non-empty without spaces, got {self.namespace!r}")

    @property
    def leader(self) -> str:
        """String with a PX ttl: the instance id of the current leader."""
        return f"{self.namespace}:leader"

    @property
    def epoch(self) -> str:
        """Counter: the fencing token, INCR on every acquisition of the lease."""
        return f"{self.namespace}:epoch"

    @property
    def term(self) -> str:
        """String: the term id of the leader that last published (fenced, with ``seq``)."""
        return f"{self.namespace}:term"

    @property
    def resume(self) -> str:
        """Hash: resume token, epoch, cluster time, saved-at (leader only, fenced)."""
        return f"{self.namespace}:resume"

    @property
    def seq(self) -> str:
        """Counter: the last published sequence number (leader only, fenced)."""
        return f"{self.namespace}:seq"

    @property
    def failover(self) -> str:
        """Hash: the last Redis primary switch any process heard (at, primary, previous, by)."""
        return f"{self.namespace}:failover"

    @property
    def handover(self) -> str:
        """Pub/sub channel: a leader that released its lease names itself here (standbys)."""
        return f"{self.namespace}:handover"

    @property
    def invalidations(self) -> str:
        """Pub/sub channel every replica subscribes to."""
        return f"{self.namespace}:invalidations"

    def watcher(self, instance_id: str) -> str:
        """Hash with a ttl: one watcher's role, epoch, last event time and counts."""
        return f"{self.namespace}:watcher:{instance_id}"

    def replica(self, instance_id: str) -> str:
        """Hash with a ttl: one replica's cache size, last seq, warmed-at, last message."""
        return f"{self.namespace}:replica:{instance_id}"

    def catch_up(self, instance_id: str) -> str:
        """Pub/sub channel: one replica's own marker, published on the primary right after it
        read ``seq``, so its arrival on the subscription shows everything before has too."""
        # Derived from the channel it follows, so it shares that name's prefix (and slot).
        return f"{self.invalidations}:catch-up:{instance_id}"

    @property
    def watcher_pattern(self) -> str:
        """SCAN pattern matching every watcher heartbeat key of this namespace."""
        return f"{_escape_glob(self.namespace)}:watcher:*"

    @property
    def replica_pattern(self) -> str:
        """SCAN pattern matching every replica heartbeat key of this namespace."""
        return f"{_escape_glob(self.namespace)}:replica:*"

    @property
    def events_accepted(self) -> str:
        """Capped stream of blob events handed on, each with its ``source_id``."""
        return f"{self.namespace}:events:accepted"

    @property
    def events_dlq(self) -> str:
        """Capped stream of blob events dead-lettered, each with its reason."""
        return f"{self.namespace}:events:dlq"

    def event_seen(self, digest: str) -> str:
        """String with a PX ttl: a blob event stored within the de-duplication window."""
        return f"{self.namespace}:events:seen:{digest}"

    def instance_of(self, key: str) -> str:
        """The instance id at the end of a watcher or replica heartbeat key."""
        prefix_w = f"{self.namespace}:watcher:"
        prefix_r = f"{self.namespace}:replica:"
        for prefix in (prefix_w, prefix_r):
            if key.startswith(prefix):
                return key[len(prefix) :]
        raise ValueError(f"{key!r} is not a heartbeat key of namespace {self.namespace!r}")


def _escape_glob(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)
