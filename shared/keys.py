"""Every Redis key and channel name of one deployment, built from its namespace.

No other module builds a key by string concatenation: two deployments (or two tests)
sharing one Redis differ only in their namespace, and an operator reading this file
knows every key the system can touch.

Every name starts with the hash tag ``{ns}`` (``{scc}:leader``, ``{scc}:seq``, ...): in
Redis Cluster a key's slot is the hash of its tag alone, so every key and shard channel
of one namespace lives in one slot and each fenced script (which reads the lease and
writes seq, term, resume and the channel together) runs on one node. Before that layout
the names were ``ns:leader`` etc.; :class:`LegacyKeys` names them for ``scc
migrate-keys``. The namespace may not contain ``{`` or ``}`` (the tag would end early).
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
        if "{" in self.namespace or "}" in self.namespace:
            raise ValueError(f"namespace may not contain {{ or }}, got {self.namespace!r}")

    @property
    def prefix(self) -> str:
        """``{ns}:``, the start of every key and channel name (the hash tag, then a colon)."""
        return f"{{{self.namespace}}}:"

    @property
    def leader(self) -> str:
        """String with a PX ttl: the instance id of the current leader."""
        return f"{self.prefix}leader"

    @property
    def epoch(self) -> str:
        """Counter: the fencing token, INCR on every acquisition of the lease."""
        return f"{self.prefix}epoch"

    @property
    def term(self) -> str:
        """String: the term id of the leader that last published (fenced, with ``seq``)."""
        return f"{self.prefix}term"

    @property
    def resume(self) -> str:
        """Hash: resume token, epoch, cluster time, saved-at (leader only, fenced)."""
        return f"{self.prefix}resume"

    @property
    def seq(self) -> str:
        """Counter: the last published sequence number (leader only, fenced)."""
        return f"{self.prefix}seq"

    @property
    def failover(self) -> str:
        """Hash: the last Redis primary switch any process heard (at, primary, previous, by)."""
        return f"{self.prefix}failover"

    @property
    def handover(self) -> str:
        """Pub/sub channel: a leader that released its lease names itself here (standbys)."""
        return f"{self.prefix}handover"

    @property
    def invalidations(self) -> str:
        """Pub/sub channel every replica subscribes to."""
        return f"{self.prefix}invalidations"

    def watcher(self, instance_id: str) -> str:
        """Hash with a ttl: one watcher's role, epoch, last event time and counts."""
        return f"{self.prefix}watcher:{instance_id}"

    def replica(self, instance_id: str) -> str:
        """Hash with a ttl: one replica's cache size, last seq, warmed-at, last message."""
        return f"{self.prefix}replica:{instance_id}"

    def catch_up(self, instance_id: str) -> str:
        """Pub/sub channel: one replica's own marker, published on the primary right after it
        read ``seq``, so its arrival on the subscription shows everything before has too."""
        # Derived from the channel it follows, so it shares that name's prefix (and slot).
        return f"{self.invalidations}:catch-up:{instance_id}"

    @property
    def watcher_pattern(self) -> str:
        """SCAN pattern matching every watcher heartbeat key of this namespace."""
        return f"{_escape_glob(self.prefix)}watcher:*"

    @property
    def replica_pattern(self) -> str:
        """SCAN pattern matching every replica heartbeat key of this namespace."""
        return f"{_escape_glob(self.prefix)}replica:*"

    @property
    def events_accepted(self) -> str:
        """Capped stream of blob events handed on, each with its ``source_id``."""
        return f"{self.prefix}events:accepted"

    @property
    def events_dlq(self) -> str:
        """Capped stream of blob events dead-lettered, each with its reason."""
        return f"{self.prefix}events:dlq"

    def event_seen(self, digest: str) -> str:
        """String with a PX ttl: a blob event stored within the de-duplication window."""
        return f"{self.prefix}events:seen:{digest}"

    @property
    def event_seen_pattern(self) -> str:
        """SCAN pattern matching every de-duplication key of this namespace."""
        return f"{_escape_glob(self.prefix)}events:seen:*"

    def instance_of(self, key: str) -> str:
        """The instance id at the end of a watcher or replica heartbeat key."""
        prefix_w = f"{self.prefix}watcher:"
        prefix_r = f"{self.prefix}replica:"
        for prefix in (prefix_w, prefix_r):
            if key.startswith(prefix):
                return key[len(prefix) :]
        raise ValueError(f"{key!r} is not a heartbeat key of namespace {self.namespace!r}")


class LegacyKeys(Keys):
    """The names of the layout before hash tags: ``ns:leader``, ``ns:seq``, ...

    Only ``scc migrate-keys`` and the watcher's start-up check read these; nothing writes
    them any more. The namespace rule is :class:`Keys`' (a namespace with a brace, allowed
    then, cannot be carried over: it has no valid new name).
    """

    @property
    def prefix(self) -> str:
        """``ns:``, the start of every name of the old layout."""
        return f"{self.namespace}:"


def durable_pairs(keys: Keys) -> list[tuple[str, str]]:
    """(old name, new name) of every fixed key whose value outlives a process.

    The lease (``leader``) and the heartbeat hashes are rewritten within a TTL by running
    processes, so they are not carried over; the de-duplication keys (one per digest) are
    found by :attr:`Keys.event_seen_pattern` instead.
    """
    old = LegacyKeys(keys.namespace)
    names = ("epoch", "seq", "term", "resume", "failover", "events_accepted", "events_dlq")
    return [(getattr(old, n), getattr(keys, n)) for n in names]


def _escape_glob(text: str) -> str:
    """``text`` with Redis glob specials (``* ? [ ] \\``) escaped; ``{`` and ``}`` are plain
    characters to ``SCAN MATCH`` (Redis' ``stringmatchlen``), so the hash tag needs none."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
