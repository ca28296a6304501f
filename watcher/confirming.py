"""A new lease counts only once the Redis replicas hold it: ``WAIT`` right after ``ACQUIRE``.

Why: Redis replicates asynchronously. A lease ``SET`` and epoch ``INCR`` acknowledged by
the primary can be lost when Sentinel promotes a replica that never received them; the
promoted replica then hands the same lease, or the same epoch number, to a second watcher
while the first still leads. A term therefore begins only after every replica connected
to the primary acknowledged the acquisition (``WAIT numreplicas timeout``), and a watcher
whose acquisition is not confirmed in that bounded time gives the lease back and does not
lead -- an isolated primary (its replicas and sentinels cut off) elects nobody.

``WAIT`` cannot run inside a Lua script and covers only the calling connection's writes,
so ``EVALSHA ACQUIRE`` and ``WAIT`` go out in one non-transactional pipeline, on one
connection. With no replica connected (a single Redis) there is nothing to wait for.

In Redis Cluster the same holds per shard: the lease's slot owner (one node, since every
key carries the ``{ns}`` tag) and its replicas. A cluster pipeline routes a keyless
``WAIT`` to any node, so there ``INFO`` and ``EVAL ACQUIRE`` + ``WAIT`` are sent on one
connection of the slot owner itself (:func:`_acquire_on_owner`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException, RedisError

from shared.cluster import closed_mid_command

#: Bounds of the time a new leader waits for its replicas.
MIN_CONFIRM_MS, MAX_CONFIRM_MS = 20, 500


def confirm_timeout_ms(ttl_ms: int) -> int:
    """How long an acquisition waits for its replicas: a fifth of the TTL, 20..500 ms."""
    return max(MIN_CONFIRM_MS, min(MAX_CONFIRM_MS, ttl_ms // 5))


@dataclass(frozen=True, slots=True)
class Acquisition:
    """What ``ACQUIRE`` + ``WAIT`` returned."""

    epoch: int
    """The new epoch, or 0 when someone else holds the lease."""
    acknowledged: int
    """Replicas that acknowledged the write (``WAIT``'s reply)."""
    expected: int
    """Replicas connected to the primary just before (all must acknowledge)."""

    @property
    def confirmed(self) -> bool:
        """True when every expected replica holds the new lease."""
        return self.acknowledged >= self.expected


async def connected_replicas(redis: aioredis.Redis) -> int:
    """``connected_slaves`` of ``INFO replication`` on the primary."""
    info: dict[str, Any] = await redis.info("replication")
    return int(info.get("connected_slaves", 0) or 0)


async def acquire_replicated(
    redis: aioredis.Redis, script: AsyncScript, *, keys: list[str], args: list[Any], ttl_ms: int
) -> Acquisition:
    """Run ``script`` (``ACQUIRE``) and, when it took the lease, ``WAIT`` on its connection."""
    if isinstance(redis, RedisCluster):
        return await _acquire_on_owner(redis, script, keys=keys, args=args, ttl_ms=ttl_ms)
    expected = await connected_replicas(redis)
    if expected == 0:
        return Acquisition(int(await script(keys=keys, args=args)), 0, 0)
    pipe = redis.pipeline(transaction=False)
    await script(keys=keys, args=args, client=pipe)
    pipe.execute_command("WAIT", expected, confirm_timeout_ms(ttl_ms))
    epoch, acknowledged = await pipe.execute()
    return Acquisition(int(epoch), int(acknowledged), expected)


async def _acquire_on_owner(
    cluster: RedisCluster, script: AsyncScript, *, keys: list[str], args: list[Any], ttl_ms: int
) -> Acquisition:
    """``INFO replication``, then ``EVAL`` + ``WAIT`` on one connection of ``keys``' slot owner.

    A stale slot map (the owner failed over) shows as ``MOVED`` or a connection error: the
    map is refreshed and the error raised, so the elector's next attempt goes to the new
    owner.
    """
    try:
        await cluster.initialize()  # no-op once the slot map is known
        node = cluster.get_node_from_key(keys[0])
    except RedisClusterException as e:  # no node reachable, or the slot is not covered
        raise RedisConnectionError(f"no cluster node serves {keys[0]}: {e}") from e
    if node is None:
        raise RedisConnectionError(f"no node serves the slot of {keys[0]}")
    try:
        with closed_mid_command():
            info: dict[str, Any] = await node.execute_command("INFO", "replication")
            expected = int(info.get("connected_slaves", 0) or 0)
            connection = node.acquire_connection()
            try:
                commands: list[tuple[Any, ...]] = [("EVAL", script.script, len(keys), *keys, *args)]
                if expected:
                    commands.append(("WAIT", expected, confirm_timeout_ms(ttl_ms)))
                await connection.send_packed_command(connection.pack_commands(commands))
                replies = [await connection.read_response() for _ in commands]
            except BaseException:
                await connection.disconnect()
                raise
            finally:
                node.release(connection)
    except (MovedError, RedisConnectionError, OSError):
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await cluster.nodes_manager.initialize()
        raise
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    acknowledged = int(replies[1]) if expected else 0
    return Acquisition(int(replies[0]), acknowledged, expected)
