"""The CLI's one Redis connection, and the only place redis-py errors are translated.

Invariant: no credential ever reaches the terminal. Every URL the CLI prints goes through
:func:`redact_url`, and a redis-py error becomes :class:`~scc.errors.RedisUnavailable`
whose message names the redacted URL and the error class, with any password scrubbed
from the library's text. The client is redis-py's synchronous one with bounded timeouts:
the CLI is short-lived, and a hung Redis must end in an error line, not a hang.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from scc.errors import RedisUnavailable
from shared.redis_url import ClusterTarget, parse_cluster_url, parse_redis_url

#: ``CLIENT SETNAME`` of the CLI's connection, so ``CLIENT LIST`` shows who is looking.
CLIENT_NAME: Final = "scc-cli"
_MASK: Final = "***"
_USERINFO = re.compile(r"//[^/@]*@")


def redact_url(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
            netloc = f"{user}:{_MASK}@{host}" if ":" in userinfo else f"{_MASK}@{host}"
        query = urlencode(
            [(k, _MASK if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
            safe="*",
        )
        # Built by hand: urlunsplit drops the empty authority of ``unix:///path``.
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        shown += f"?{query}" if query else ""
        return shown + (f"#{parts.fragment}" if parts.fragment else "")
    except ValueError:
        return _USERINFO.sub(f"//{_MASK}@", url.split("?", 1)[0])


def secrets_in(url: str) -> list[str]:
    """The password(s) ``url`` carries, to scrub them from any text shown to the operator."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [unquote(parts.password)] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return found


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret of at least 3 characters replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, _MASK)
    return text


class SentinelClient(redis.Redis):
    """A client of a Sentinel group's primary that still knows the group (``scc inspect``)."""

    sentinels: Sentinel
    master_name: str


def open_redis(
    url: str, *, timeout: float, sentinel_password: str | None = None, slot_key: str = ""
) -> redis.Redis:
    """A synchronous client (bytes replies) whose connect and reads time out after ``timeout``.

    A ``redis+sentinel://`` URL gives a client of the group's current primary (asked of
    the sentinels at connect; ``sentinel_password`` authenticates against them); a
    ``redis+cluster://`` URL gives a :class:`ShardClient` of the master that owns
    ``slot_key``'s slot (any key of the namespace: they share one slot).
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "client_name": CLIENT_NAME,
        "decode_responses": False,
    }
    try:
        cluster = parse_cluster_url(url)
        if cluster is not None:
            return _shard_client(cluster, slot_key or "{scc}", options)
        group = parse_redis_url(url)
        if group is None:
            return redis.Redis.from_url(url, **options)
    except ValueError as e:  # a URL neither we nor redis-py can parse
        detail = scrub(str(e), secrets_in(url))
        raise RedisUnavailable(f"bad Redis URL {redact_url(url)} ({detail})") from e
    # redis-py's Sentinel carries no annotations (hence the two ignores).
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(group.sentinels),
        sentinel_kwargs={
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "client_name": f"{CLIENT_NAME}:sentinel",
            "password": sentinel_password,
            "ssl": group.tls,
        },
    )
    client: SentinelClient = sentinels.master_for(  # type: ignore[no-untyped-call]
        group.master,
        redis_class=SentinelClient,
        db=group.db,
        username=group.username,
        password=group.password,
        ssl=group.tls,
        **options,
    )
    client.sentinels, client.master_name = sentinels, group.master
    return client


class ShardClient(redis.Redis):
    """A client of the master owning one namespace's slot in a Redis Cluster.

    Every key and channel of a namespace carries the hash tag ``{ns}``, so one node holds
    all of them: the CLI talks to that node alone (its pipelines, ``SCAN``, ``TIME`` and
    ``PUBSUB SHARDNUMSUB`` all apply as they are), instead of through ``RedisCluster``,
    whose pipelines refuse keyless commands. :attr:`cluster_shard` makes pub/sub sharded.
    """

    cluster_shard = True
    address: str
    replicas: int


def _shard_client(target: ClusterTarget, slot_key: str, options: dict[str, Any]) -> redis.Redis:
    """Ask the startup nodes who owns ``slot_key``'s slot; a :class:`ShardClient` of it."""
    try:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],  # type: ignore[no-untyped-call]
            username=target.username,
            password=target.password,
            ssl=target.tls,
            **options,
        )
    except RedisClusterException as e:  # no startup node answered CLUSTER SLOTS
        raise redis.ConnectionError(str(e)) from e
    try:
        nodes = cluster.nodes_manager.slots_cache.get(key_slot(slot_key.encode())) or []
    finally:
        cluster.close()
    if not nodes:
        raise redis.ConnectionError(f"no cluster node serves the slot of {slot_key}")
    client = ShardClient(
        host=nodes[0].host,
        port=nodes[0].port,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **options,
    )
    client.address, client.replicas = f"{nodes[0].host}:{nodes[0].port}", len(nodes) - 1
    return client


def describe(error: redis.RedisError, url: str) -> str:
    """The one line an operator reads for ``error`` raised while talking to ``url``."""
    shown = redact_url(url)
    detail = scrub(str(error).strip() or "no detail", secrets_in(url))
    kind = type(error).__name__
    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis at {shown} ({kind}: {detail})"
    return f"Redis at {shown} refused a command ({kind}: {detail})"


@contextmanager
def translated_errors(url: str) -> Iterator[None]:
    """Re-raise any redis-py error inside the block as :class:`RedisUnavailable`."""
    try:
        yield
    except redis.RedisError as e:
        raise RedisUnavailable(describe(e, url)) from e
