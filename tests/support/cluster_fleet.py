"""A :class:`~tests.support.fleet.Fleet` whose Redis is a Redis Cluster, reached by URL.

Why: every process of the system must work through ``redis+cluster://`` exactly as it does
through ``redis://``; this fleet gives its watchers and replicas only the cluster URL of a
real 3-master cluster (:mod:`tests.support.redis_cluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.fleet import Fleet
from tests.support.redis_cluster import RedisClusterRig
from tests.support.redis_server import redis_binary


@dataclass
class ClusterFleet:
    """A Redis Cluster plus a :class:`Fleet` configured with the cluster's URL."""

    cluster: RedisClusterRig
    fleet: Fleet

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL every process of the fleet uses."""
        return self.cluster.url()


class _ClusterAsServer:
    """What :class:`Fleet` reads of its Redis (``url``, ``close``), for a cluster."""

    def __init__(self, cluster: RedisClusterRig) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.cluster.url()

    def close(self) -> None:
        self.cluster.close()


@contextmanager
def running_cluster_fleet(**kwargs: Any) -> Iterator[ClusterFleet]:
    """A formed cluster and the MongoDB double; watchers and replicas are the caller's."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
    cluster = RedisClusterRig(binary)
    fleet = Fleet(**kwargs)
    try:
        cluster.start()
        fleet.redis = _ClusterAsServer(cluster)  # type: ignore[assignment]  # duck-typed Redis
        fleet.start_mongo()
        yield ClusterFleet(cluster=cluster, fleet=fleet)
    finally:
        fleet.close()
        cluster.close()
