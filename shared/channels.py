"""Pub/sub that works the same on one Redis, through Sentinel and in Redis Cluster.

Why a module of its own: in Redis Cluster a plain ``PUBLISH`` is broadcast to every node
over the cluster bus and a plain subscription lives on whichever node it reached; sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7) keeps a channel on the shard that owns its
slot -- the shard of the namespace's ``{ns}`` tag, where the fenced scripts run -- and
redis-py moves the subscription when that slot moves. So with a cluster client every
channel of the system is a shard channel, and these helpers pick the command and turn
``smessage``/``ssubscribe`` replies into the ``message``/``subscribe`` the callers read.

Invariant: a caller never branches on the client kind for pub/sub; the reply dictionaries
it sees have the same ``type`` values in every mode.
"""

from __future__ import annotations

from typing import Any

from shared.cluster import closed_mid_command, is_cluster

#: Sharded reply types and the plain names callers read.
_PLAIN_TYPE = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


def sharded(client: object) -> bool:
    """True when pub/sub on ``client`` must be sharded (a Redis Cluster client)."""
    return is_cluster(client)


async def publish(client: Any, channel: str, message: str | bytes) -> int:
    """``SPUBLISH`` in a cluster, else ``PUBLISH``; the number of receivers."""
    if sharded(client):
        return int(await client.spublish(channel, message))
    return int(await client.publish(channel, message))


async def subscribe(client: Any, pubsub: Any, *channels: str) -> None:
    """``SSUBSCRIBE`` in a cluster, else ``SUBSCRIBE``, on ``pubsub`` (made by ``client``).

    Several channels of one namespace share its slot, so one call subscribes them all.

    redis-py picks the shard channel's node from the client's slot map without loading
    it, so a cluster client is initialized first (a no-op once the map is known).
    """
    if sharded(client):
        await client.initialize()
        with closed_mid_command():
            await pubsub.ssubscribe(*channels)
    else:
        await pubsub.subscribe(*channels)


async def next_message(
    client: Any, pubsub: Any, *, wait_s: float, ignore_subscribe_messages: bool = False
) -> dict[str, Any] | None:
    """The next reply on ``pubsub`` (``get_sharded_message`` in a cluster), types made plain."""
    options: dict[str, Any] = {"timeout": wait_s}
    if ignore_subscribe_messages:
        options["ignore_subscribe_messages"] = True
    if sharded(client):
        with closed_mid_command():
            reply = await pubsub.get_sharded_message(**options)
    else:
        reply = await pubsub.get_message(**options)
    if reply is None:
        return None
    kind = reply.get("type")
    kind = kind.decode() if isinstance(kind, bytes) else kind
    return {**reply, "type": _PLAIN_TYPE.get(kind, kind)}
