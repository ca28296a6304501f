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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from shared.redis_url import parse_cluster_url

#: Attempts of a cluster command (each after a slot-map refresh) before the caller sees it.
CLUSTER_RETRIES: Final = 6


@contextmanager
def closed_mid_command() -> Iterator[None]:
    """Re-raise redis-py's "connection closed under a command" as ``ConnectionError``.

    redis-py 8.1's asyncio cluster client disconnects a failed node's connections while
    another coroutine may be writing on one of them; that command then fails with
    ``AttributeError: 'NoneType' object has no attribute 'writelines'`` (seen when the
    slot owner is killed) instead of a ``RedisError``. Callers handle connection errors
    (retry, step down, resubscribe); an ``AttributeError`` would kill their task.
    """
    try:
        yield
    except AttributeError as e:
        raise RedisConnectionError(f"cluster connection closed under a command ({e})") from e


class GuardedPipeline(ClusterPipeline):
    """A cluster pipeline whose ``execute`` raises connection errors as ``RedisError``."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        """``ClusterPipeline.execute`` under :func:`closed_mid_command`."""
        with closed_mid_command():
            return await super().execute(raise_on_error, allow_redirections)


class GuardedCluster(RedisCluster):
    """``RedisCluster`` whose commands and pipelines fail with ``RedisError`` only."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """``RedisCluster.execute_command`` under :func:`closed_mid_command`."""
        with closed_mid_command():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        """A :class:`GuardedPipeline` (as redis-py's, no shard hint in cluster mode)."""
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # mypy reads a Protocol attribute of redis-py's as abstract; redis-py builds it.
        return GuardedPipeline(self, transaction)  # type: ignore[abstract]


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
    client = GuardedCluster(
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


def wait_target(client: object, key: str) -> dict[str, Any]:
    """Options for ``pipeline.execute_command("WAIT", ...)`` that send it to ``key``'s owner.

    A cluster pipeline sends a keyless command to its default node; a ``WAIT`` there runs
    on a connection that wrote nothing and counts that node's replicas at once, not the
    ones that must hold the writes. Routed to the slot owner, it follows the pipeline's
    writes on the same connection. Empty for a client that is not a cluster's.
    """
    if not isinstance(client, RedisCluster):
        return {}
    try:
        node = client.get_node_from_key(key)
    except RedisClusterException as e:  # the slot map is not known (yet)
        raise RedisConnectionError(f"no cluster node known for {key}: {e}") from e
    return {"target_nodes": node}
