"""Redis Cluster clients: redis-py's ``RedisCluster`` for a ``redis+cluster://`` URL.

Why a module of its own: a cluster client is not a ``redis.asyncio.Redis`` and a few
callers must act differently with one (sharded pub/sub in :mod:`shared.channels`, the
lease confirmation on the slot owner in ``watcher.confirming``); :func:`is_cluster` is the
one question they ask. Every key of a namespace shares the hash tag ``{ns}``
(:mod:`shared.keys`), so each multi-key command and script touches one slot and runs on
the one master that owns it; redis-py follows slot moves and failovers (``MOVED`` → a
refresh of its slot map).
"""

from __future__ import annotations

from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import RedisError

from shared.redis_url import parse_cluster_url

#: Attempts of a cluster command (each after a slot-map refresh) before the caller sees it.
CLUSTER_RETRIES: Final = 6


def make_cluster(url: str, options: dict[str, Any]) -> aioredis.Redis | None:
    """redis-py's asyncio ``RedisCluster`` for a ``redis+cluster://`` URL (None otherwise).

    Returned under the type ``Redis``: ``RedisCluster`` offers the commands the system
    uses (GET/MGET on one slot, scripts routed by their KEYS, pipelines, SCAN, sharded
    pub/sub) but is not a subclass; code that must act differently asks :func:`is_cluster`.
    ``options`` are :func:`shared.clients.make_redis`'s timeouts, client name and decoding.
    """
    target = parse_cluster_url(url)
    if target is None:
        return None
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        # Follow a failover quickly: the default backs off up to a second between tries.
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), CLUSTER_RETRIES),
        **options,
    )
    return cast(aioredis.Redis, client)


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (sharded pub/sub, per-node commands).

    That is redis-py's ``RedisCluster`` (asyncio or not), or a client of one cluster node
    that says so with a true ``cluster_shard`` attribute (``scc``'s shard client).
    """
    if isinstance(client, RedisCluster | SyncRedisCluster):
        return True
    return getattr(client, "cluster_shard", False) is True


def slot_owner(client: object, key: str) -> tuple[str, int]:
    """``host, port`` of the primary serving ``key``'s slot, as the cluster client sees it."""
    if not isinstance(client, RedisCluster):
        raise TypeError("slot_owner needs a RedisCluster client")
    node = client.get_node_from_key(key)
    if node is None:
        raise RedisError(f"no node serves the slot of {key}")
    return str(node.host), int(node.port)
