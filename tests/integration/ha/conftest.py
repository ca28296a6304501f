"""The HA rigs as fixtures: a Sentinel group and a Redis Cluster."""

from tests.support.redis_cluster import redis_cluster
from tests.support.sentinel_group import sentinel_group

__all__ = ["redis_cluster", "sentinel_group"]
