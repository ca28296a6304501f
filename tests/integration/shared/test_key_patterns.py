"""The SCAN patterns of :mod:`shared.keys` against a real redis-server's glob matching."""

from __future__ import annotations

import redis

from shared.keys import Keys


def test_heartbeat_patterns_match_only_their_namespace(redis_url: str) -> None:
    """A namespace with glob specials matches its own heartbeats, not look-alike namespaces."""
    keys, lookalikes = Keys("a*b[1]?"), [Keys("axb1z"), Keys("a*b[1]?x"), Keys("a*b1?")]
    with redis.Redis.from_url(redis_url) as client:
        for k in [keys, *lookalikes]:
            client.set(k.watcher("w"), 1)
            client.set(k.replica("r"), 1)
            client.set(k.event_seen("d"), 1)
        client.set("a*b[1]?:watcher:old-layout", 1)
        found = {
            pattern: sorted(x.decode() for x in client.scan_iter(match=pattern, count=1000))
            for pattern in (keys.watcher_pattern, keys.replica_pattern, keys.event_seen_pattern)
        }
    assert found == {
        keys.watcher_pattern: [keys.watcher("w")],
        keys.replica_pattern: [keys.replica("r")],
        keys.event_seen_pattern: [keys.event_seen("d")],
    }
