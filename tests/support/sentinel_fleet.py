"""A :class:`~tests.support.fleet.Fleet` whose Redis is a Sentinel group, reached by URL.

Why: every process of the system must work through ``redis+sentinel://`` exactly as it
does through ``redis://``; this fleet gives its watchers and replicas only the Sentinel
URL of a real group (:mod:`tests.support.sentinel_group`), so none of them can reach the
primary except by asking the sentinels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.fleet import Fleet
from tests.support.redis_server import redis_binary
from tests.support.sentinel_group import SentinelGroup


@dataclass
class SentinelFleet:
    """A Sentinel group plus a :class:`Fleet` configured with the group's URL."""

    group: SentinelGroup
    fleet: Fleet

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL every process of the fleet uses."""
        return self.group.url()


class _GroupAsServer:
    """What :class:`Fleet` reads of its Redis (``url``, ``close``), for a Sentinel group."""

    def __init__(self, group: SentinelGroup) -> None:
        self.group = group

    @property
    def url(self) -> str:
        return self.group.url()

    def close(self) -> None:
        self.group.close()


@contextmanager
def running_sentinel_fleet(*, down_after_ms: int = 500, **kwargs: Any) -> Iterator[SentinelFleet]:
    """A settled Sentinel group and the MongoDB double; watchers and replicas are the caller's."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
    group = SentinelGroup(binary, down_after_ms=down_after_ms)
    fleet = Fleet(**kwargs)
    try:
        group.start()
        fleet.redis = _GroupAsServer(group)  # type: ignore[assignment]  # duck-typed Redis
        fleet.start_mongo()
        yield SentinelFleet(group=group, fleet=fleet)
    finally:
        fleet.close()
        group.close()
