"""Factories for the two clients every process needs, configured the same way everywhere.

MongoDB: one ``AsyncMongoClient`` per event loop, ``uuidRepresentation=standard``, naive
UTC datetimes and ``DATETIME_AUTO`` (out-of-range dates as ``DatetimeMS``), so a document
read by ``find`` equals the same document decoded from a message (see
:mod:`shared.messages`). Redis: redis-py's asyncio client with bounded
connect/read timeouts, so a dead or hung Redis surfaces as an error instead of a hang; a
``redis+sentinel://`` URL gives a client that follows the group's primary through failovers.
:func:`make_subscribe_redis` builds the client a service replica subscribes through when
``SCC_REDIS_SUBSCRIBE_URL`` is set -- with ``?role=replica``, one of the master's replicas,
picked so that a fleet spreads over them (:class:`SpreadReplicaPool`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as aioredis
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import AsyncMongoClient
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SlaveNotFoundError,
)
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from shared.cluster import make_cluster
from shared.redis_url import SentinelTarget, parse_redis_url
from shared.settings import MongoSettings, RedisSettings

#: What a Redis call raises when its connection is gone or unusable: redis-py's errors,
#: OS-level socket errors, and ``RuntimeError`` -- under uvloop (which uvicorn uses), a
#: reconnect racing a closed transport raises "unable to perform operation on
#: <TCPTransport closed=True ...>" from inside redis-py. Adapters catch exactly these.
REDIS_DOWN_ERRORS: Final = (RedisError, OSError, RuntimeError)

#: A trailing ``-<number>`` of an instance id (see :func:`spread_index`).
_ORDINAL: Final = re.compile(r"-(\d+)$")
#: Reconnect attempts of a Sentinel client's command before the error reaches the caller.
SENTINEL_RETRIES: Final = 3
#: How long, after a switch, the demoted primary is refused even if a sentinel names it.
DEMOTED_FOR_S: Final = 15.0

#: Options under which a document read from MongoDB equals its message-decoded twin.
#: ``DATETIME_AUTO``: a date outside ``datetime``'s years 1..9999 (legal BSON, easily
#: written from JavaScript or Java) decodes as ``bson.datetime_ms.DatetimeMS`` instead of
#: raising ``InvalidBSON`` -- the default would make one such document unreadable for
#: every process, the change stream included.
MONGO_DOCUMENT_OPTIONS: dict[str, Any] = {
    "uuidRepresentation": "standard",
    "tz_aware": False,
    "datetime_conversion": DatetimeConversion.DATETIME_AUTO,
}
#: The same options as a codec, for decoding raw BSON the way the client would.
DOCUMENT_CODEC: Final[CodecOptions[dict[str, Any]]] = CodecOptions(
    uuid_representation=UuidRepresentation.STANDARD,
    tz_aware=False,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)


def make_mongo(settings: MongoSettings, *, appname: str, **extra: Any) -> AsyncMongoClient[Any]:
    """An async MongoDB client for ``settings.uri`` (PyMongo validates the URI)."""
    options: dict[str, Any] = {
        **MONGO_DOCUMENT_OPTIONS,
        "serverSelectionTimeoutMS": settings.timeout_ms,
        "connectTimeoutMS": settings.timeout_ms,
        "appname": appname,
        **extra,
    }
    return AsyncMongoClient(settings.uri.get_secret_value(), **options)


class FollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that never (re)connects to a demoted primary.

    Two ways redis-py would otherwise reach one: a command sent on a connection that was
    closed under it -- closing an in-use connection on a switch makes redis-py retry the
    command, and its ``send_packed_command`` reconnects to the address the connection last
    had, without asking the sentinels (redis-py 8.1) -- and a connection that asked the
    sentinels just before the switch and comes up on the old primary just after it was
    left (closing it while it connected did nothing). So a reconnect asks the sentinels,
    and a connection that comes up on a refused address is dropped at once (redis-py's
    retry then asks the sentinels anew).
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send ``command``; a closed connection reconnects through the sentinels first."""
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Connect to this connection's address; MasterNotFoundError if it is demoted."""
        await super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )
        refuses = getattr(self.connection_pool, "refuses", None)
        if refuses is not None and refuses((self.host, self.port)):
            await self.disconnect()
            raise MasterNotFoundError(f"the primary {self.host}:{self.port} was demoted")


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    """:class:`FollowingConnection` over TLS (``rediss+sentinel://``)."""


class FollowingPool(SentinelConnectionPool):
    """A Sentinel pool that leaves, and for a while refuses, the primary a switch demoted.

    Each sentinel learns of a promotion on its own (up to seconds apart), and one that has
    not yet names the old primary -- still up and writable after a planned failover. A
    connection made then would write where every write is lost, so after a switch (see
    :mod:`shared.sentinel_watching`) that address is refused for :data:`DEMOTED_FOR_S`,
    both when a sentinel names it and when a connection comes up on it
    (:class:`FollowingConnection`).

    Invariant: after :meth:`leave` no connection of the pool -- idle, in use, pub/sub, or
    connecting at that moment -- stays on the demoted address.
    """

    demoted: tuple[str, int] | None = None
    demoted_until: float = 0.0

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        """A pool whose connections are :class:`FollowingConnection` (TLS if ``ssl``)."""
        tls = bool(kwargs.get("ssl", False))
        following = FollowingSSLConnection if tls else FollowingConnection
        kwargs.setdefault("connection_class", following)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    def demote(self, address: tuple[str, int]) -> None:
        """Refuse ``address`` as the primary for the next :data:`DEMOTED_FOR_S` seconds."""
        self.demoted, self.demoted_until = address, time.monotonic() + DEMOTED_FOR_S

    def refuses(self, address: Any) -> bool:
        """``address`` is the primary a switch demoted less than :data:`DEMOTED_FOR_S` ago."""
        if self.demoted is None or time.monotonic() >= self.demoted_until:
            return False
        return (str(address[0]), int(address[1])) == self.demoted

    async def leave(self, address: tuple[str, int]) -> int:
        """Demote ``address`` and close every connection on it; how many were closed.

        Every connection, not only idle ones: redis-py's own check on a changed primary
        closes idle connections only, so an in-use one (a pub/sub subscription, a blocked
        read) would stay on the demoted primary, and a pool that already asked a sentinel
        naming the new primary would otherwise look "moved" while it is not.
        """
        self.demote(address)
        on_it = [
            c
            for c in (*self._available_connections, *self._in_use_connections)
            if (getattr(c, "host", None), getattr(c, "port", None)) == address
        ]
        results = await asyncio.gather(*(c.disconnect() for c in on_it), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        return len(on_it)

    async def get_master_address(self) -> Any:
        """The primary the sentinels name, unless it is the one a switch just demoted."""
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        if self.refuses(address):
            raise MasterNotFoundError(f"a sentinel still names the demoted primary {address}")
        return address


class SpreadReplicaPool(SentinelConnectionPool):
    """A Sentinel pool of the master's *replicas* that spreads a fleet over them.

    redis-py's replica pool starts its round robin at a random index of the list the first
    sentinel that answers returns (in that sentinel's own order). This one sorts the list
    (every process sees the same order) and starts at :attr:`spread_index` -- derived from
    the instance id (:func:`spread_index`) -- so a fleet divides itself over the replicas
    evenly in expectation and each process keeps its choice across restarts. Every
    (re)connect goes on round-robin from the replica used last, skipping those that refuse,
    and falls back to the master when no replica is reachable (reading pub/sub from a
    master is fine): a subscription whose replica went away, was restarted or reconfigured
    (Sentinel kills a reconfigured node's pub/sub clients) moves to another node, and so
    does one on a replica that answers but has lost its primary (the subscriber reopens a
    silent subscription, and the reconnect takes the next replica).
    """

    spread_index: int = 0

    async def rotate_slaves(self) -> AsyncIterator[Any]:
        """The replicas from :attr:`spread_index` on, then the master; SlaveNotFoundError."""
        found = await self.sentinel_manager.discover_slaves(self.service_name)
        replicas = sorted((str(host), int(port)) for host, port in found)
        if replicas:
            if self.slave_rr_counter is None:
                self.slave_rr_counter = (self.spread_index - 1) % len(replicas)
            for _ in range(len(replicas)):
                self.slave_rr_counter = (self.slave_rr_counter + 1) % len(replicas)
                yield replicas[self.slave_rr_counter]
        try:
            yield await self.get_master_address()  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            pass
        raise SlaveNotFoundError(f"no replica and no master found for {self.service_name!r}")


def spread_index(instance_id: str) -> int:
    """A stable number for ``instance_id`` (the same in every process and run).

    An ordinal suffix (``scc-service-0``, ``r-2``: StatefulSet pods, numbered fleets) is
    the number itself, so consecutive instances take consecutive replicas; any other id is
    hashed (an even spread in expectation: Deployment pods, host-pid ids).
    """
    ordinal = _ORDINAL.search(instance_id)
    if ordinal is not None and len(ordinal.group(1)) <= 6:
        return int(ordinal.group(1))
    return int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:4], "big")


class SentinelRedis(aioredis.Redis):
    """A client of the primary a Sentinel group names; closing it closes the sentinel clients.

    redis-py asks the sentinels for the primary on every (re)connect; :attr:`sentinels`
    and :attr:`master_name` let a caller ask them itself (who is primary, ``+switch-master``).
    """

    sentinels: Sentinel
    master_name: str

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's pool, then every sentinel client."""
        try:
            await super().aclose(close_connection_pool)
        finally:
            await self.sentinels.aclose()


def make_sentinel(
    settings: RedisSettings, *, client_name: str, socket_timeout: float = 5.0
) -> tuple[Sentinel, SentinelTarget] | None:
    """The sentinel group of a ``redis+sentinel://`` URL (None for a plain URL)."""
    target = parse_redis_url(settings.url.get_secret_value())
    if target is None:
        return None
    password = settings.sentinel_password
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": min(socket_timeout, 2.0),
        "socket_timeout": socket_timeout,
        "client_name": f"{client_name}:sentinel",
        "password": None if password is None else password.get_secret_value(),
        "ssl": target.tls,
    }
    # redis-py's asyncio Sentinel constructor carries no annotations.
    group = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    return group, target


def make_redis(
    settings: RedisSettings, *, client_name: str, socket_timeout: float = 5.0
) -> aioredis.Redis:
    """An asyncio Redis client (bytes responses) with bounded timeouts.

    For a ``redis+sentinel://`` URL a :class:`SentinelRedis` on the group's current primary;
    for ``redis+cluster://`` redis-py's ``RedisCluster`` (:func:`shared.cluster.make_cluster`).
    """
    options = _client_options(client_name, socket_timeout)
    cluster = make_cluster(settings.url.get_secret_value(), options)
    if cluster is not None:
        return cluster
    group = make_sentinel(settings, client_name=client_name, socket_timeout=socket_timeout)
    if group is None:
        return aioredis.Redis.from_url(settings.url.get_secret_value(), **options)
    sentinel, target = group
    return _through_sentinel(sentinel, target, options, replica=False)


def _client_options(client_name: str, socket_timeout: float) -> dict[str, Any]:
    """Connection options every Redis client of ours shares (bounded timeouts, bytes)."""
    return {
        "socket_connect_timeout": min(socket_timeout, 2.0),
        "socket_timeout": socket_timeout,
        "client_name": client_name,
        "decode_responses": False,
    }


def _through_sentinel(
    sentinel: Sentinel, target: SentinelTarget, options: dict[str, Any], *, replica: bool
) -> SentinelRedis:
    """A :class:`SentinelRedis` on the group's primary, or (``replica``) on one of its replicas.

    The primary's pool is a :class:`FollowingPool`, a replica's a :class:`SpreadReplicaPool`.
    """
    # redis-py's default retry backs off up to 1 s between reconnects; through a failover
    # that is up to a second spent waiting after the promotion. Our callers retry anyway.
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), SENTINEL_RETRIES)
    client: SentinelRedis = (sentinel.slave_for if replica else sentinel.master_for)(
        target.master,
        redis_class=SentinelRedis,
        connection_pool_class=SpreadReplicaPool if replica else FollowingPool,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        retry=retry,
        **options,
    )
    client.sentinels, client.master_name = sentinel, target.master
    return client


def make_subscribe_redis(
    settings: RedisSettings, *, client_name: str, spread_key: str, socket_timeout: float = 5.0
) -> aioredis.Redis | None:
    """The client to subscribe through when ``SCC_REDIS_SUBSCRIBE_URL`` is set, else None.

    A plain URL or a ``?role=master`` Sentinel URL gives the same client as
    :func:`make_redis`; ``?role=replica`` a :class:`SentinelRedis` whose pool
    (:class:`SpreadReplicaPool`) picks one of the master's replicas, spread by
    ``spread_key`` (the instance id). Only subscriptions may use it: replicas refuse writes.
    """
    if settings.subscribe_url is None:
        return None
    url = settings.subscribe_url
    own = settings.model_copy(update={"url": url})
    target = parse_redis_url(url.get_secret_value())
    if target is None or target.role == "master":
        return make_redis(own, client_name=client_name, socket_timeout=socket_timeout)
    group = make_sentinel(own, client_name=client_name, socket_timeout=socket_timeout)
    assert group is not None
    sentinel, _ = group
    options = _client_options(client_name, socket_timeout)
    client = _through_sentinel(sentinel, target, options, replica=True)
    pool = client.connection_pool
    assert isinstance(pool, SpreadReplicaPool)
    pool.spread_index = spread_index(spread_key)
    return client
