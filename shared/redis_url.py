"""The ``redis+sentinel://`` URL form, parsed once so every process reads it the same way.

Why a module of its own: redis-py parses ``redis://``, ``rediss://`` and ``unix://`` itself
but has no parser for a Sentinel group, and the watcher, the service replicas and ``scc``
must agree on what a URL means. The form is::

    redis+sentinel://[user:password@]host1:port1[,host2:port2...]/MASTER_NAME[/DB]
    rediss+sentinel://...   (TLS to the sentinels and to the primary)

The userinfo authenticates against the primary (and its replicas); the sentinels' own
password, if any, comes from ``SCC_REDIS_SENTINEL_PASSWORD``. A port may be left out
(Sentinel's 26379), IPv6 hosts are written ``[::1]:26379``.

A Redis Cluster is named by its startup nodes (any reachable one is enough; redis-py
learns the rest from ``CLUSTER SLOTS``)::

    redis+cluster://[user:password@]host1:port1[,host2:port2...][/]
    rediss+cluster://...    (TLS to every node)

It takes no database (a cluster has only database 0) and no query; a port may be left
out (6379). :func:`parse_cluster_url` reads it; :func:`parse_redis_url` only checks it.
The only query a Sentinel URL takes is ``?role=master`` (the default) or ``?role=replica``:
the second names one of the master's replicas instead of the master itself, which only a
*subscription* can use (``SCC_REDIS_SUBSCRIBE_URL``: PUBLISH reaches replicas through
replication); writes always go to the master.

Invariant: :func:`parse_redis_url` either returns a complete :class:`SentinelTarget`
(at least one sentinel, a master name, a database index) or raises ``ValueError`` whose
message names the part that is wrong -- never the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

#: Schemes redis-py opens on its own.
PLAIN_SCHEMES = frozenset({"redis", "rediss", "unix"})
#: Schemes that name a Sentinel group (TLS for the second).
SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})
DEFAULT_SENTINEL_PORT = 26379
#: Schemes that name a Redis Cluster by its startup nodes (TLS for the second).
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
DEFAULT_CLUSTER_PORT = 6379
#: What ``?role=`` of a Sentinel URL may say: the master, or one of its replicas.
SENTINEL_ROLES = ("master", "replica")


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A Sentinel group and the primary it watches, as a ``redis+sentinel://`` URL names them."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: ``master`` (the default) or ``replica`` (``?role=replica``: subscriptions only).
    role: str = "master"


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """A Redis Cluster as a ``redis+cluster://`` URL names it: startup nodes, credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_cluster_url(url: str) -> ClusterTarget | None:
    """The cluster of a ``redis+cluster://`` URL; None for any other scheme.

    Raises ``ValueError`` naming the problem (never the password) for a malformed one.
    """
    scheme = scheme_of(url)
    if scheme not in CLUSTER_SCHEMES:
        return None
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise ValueError("a redis+cluster URL takes no ?query or #fragment")
    authority, _, path = rest.partition("/")
    if path:
        raise ValueError("a redis+cluster URL takes no /DB path (a cluster has only database 0)")
    userinfo, at, hostlist = authority.rpartition("@")
    username, password = _userinfo(userinfo) if at else (None, None)
    nodes = tuple(
        _host(h, default_port=DEFAULT_CLUSTER_PORT, what="cluster node")
        for h in hostlist.split(",")
    )
    return ClusterTarget(
        nodes=nodes, username=username, password=password, tls=scheme == "rediss+cluster"
    )


def scheme_of(url: str) -> str:
    """The scheme of ``url`` in lower case ("" when there is none)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def parse_redis_url(url: str) -> SentinelTarget | None:
    """The Sentinel target of ``url``; None for a plain form redis-py reads itself.

    Raises ``ValueError`` naming the problem for an unknown scheme or a malformed
    Sentinel URL.
    """
    scheme = scheme_of(url)
    if scheme in PLAIN_SCHEMES:
        return None
    if scheme in CLUSTER_SCHEMES:
        parse_cluster_url(url)  # ValueError names the bad part
        return None
    if scheme not in SENTINEL_SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    rest = url.split("://", 1)[1]
    rest, role = _sentinel_query(rest)
    authority, _, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    username, password = _userinfo(userinfo) if at else (None, None)
    master, db = _path(path)
    return SentinelTarget(
        sentinels=tuple(_host(h) for h in hostlist.split(",")),
        master=master,
        db=db,
        username=username,
        password=password,
        tls=scheme == "rediss+sentinel",
        role=role,
    )


def _sentinel_query(rest: str) -> tuple[str, str]:
    """``rest`` without its query, and the role the query names (``master`` if none)."""
    if "#" in rest:
        raise ValueError("a redis+sentinel URL takes no #fragment")
    rest, mark, query = rest.partition("?")
    if not mark:
        return rest, "master"
    name, equals, value = query.partition("=")
    if name != "role" or not equals or value not in SENTINEL_ROLES:
        # The query is not echoed: an unencoded '?' in a password would put part of it there.
        raise ValueError("a redis+sentinel URL takes no ?query but ?role=master or ?role=replica")
    return rest, value


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _host(
    item: str, *, default_port: int = DEFAULT_SENTINEL_PORT, what: str = "sentinel"
) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [v6]:port or [v6]
        host, bracket, after = item[1:].partition("]")
        if not bracket or not host or (after and not after.startswith(":")):
            raise ValueError(f"{what} address {item!r} is not [ipv6]:port")
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = item.partition(":")
        if not host or ":" in port_text:
            raise ValueError(f"{what} address {item!r} is not host:port")
    if any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"{what} address {item!r} has a bad host name")
    if not port_text:
        return host, default_port
    if not _is_number(port_text) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} address {item!r} has no valid port (1-65535)")
    return host, int(port_text)


def _path(path: str) -> tuple[str, int]:
    master_text, _, db_text = path.partition("/")
    master = unquote(master_text)
    if not master or any(c.isspace() for c in master):
        raise ValueError("names no master: the path must be /MASTER_NAME[/DB]")
    if not db_text:
        return master, 0
    if not _is_number(db_text):
        raise ValueError(f"database {db_text!r} is not a non-negative integer (/MASTER_NAME/DB)")
    return master, int(db_text)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()
