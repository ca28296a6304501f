"""Which Redis holds the deployment's data, and whether it failed over since replicas reloaded.

Why a module of its own: with a ``redis+sentinel://`` URL the primary is whatever the
sentinels name at this instant, and a failover since a replica's last reload is the one
thing an operator needs to know after Redis trouble (asynchronous replication may have
lost the last writes; a replica that reloaded after the switch is known to be exact).

In Redis Cluster the primary named is the master owning the slot of the namespace's
``{ns}`` hash tag (every key of the deployment lives there), with its replica count.

Read-only, like :mod:`scc.inspecting`: the sentinels are asked, ``{ns}:failover`` (written
by whichever watcher or replica heard ``+switch-master``) is read; a sentinel that cannot
answer leaves the address unknown rather than failing the inspection.
"""

from __future__ import annotations

from typing import Any

import redis

from scc.connecting import SentinelClient, ShardClient
from scc.snapshot import RedisPrimary, Replica
from shared.keys import Keys


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(_text(value))
    except ValueError:
        return None


def _sentinel_view(client: SentinelClient) -> tuple[str | None, int | None]:
    # redis-py's Sentinel carries no annotations (hence the ignores).
    try:
        host, port = client.sentinels.discover_master(client.master_name)  # type: ignore[no-untyped-call]
        replicas = client.sentinels.discover_slaves(client.master_name)  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None, None
    return f"{host}:{port}", len(replicas)


def read_primary(
    client: redis.Redis, keys: Keys, *, now: float, replicas: list[Replica]
) -> RedisPrimary:
    """The primary the sentinels name (if any), the last failover, who reloaded since."""
    raw: dict[Any, Any] = {}
    found = client.hgetall(keys.failover)
    if isinstance(found, dict):
        raw = {_text(k): v for k, v in found.items()}
    at = _float(raw.get("at"))
    address, known = _sentinel_view(client) if isinstance(client, SentinelClient) else (None, None)
    if isinstance(client, ShardClient):  # the master owning the namespace's slot
        address, known = client.address, client.replicas
    stale = [
        r.instance_id
        for r in replicas
        if at is not None and (r.warmed_at is None or r.warmed_at < at)
    ]
    return RedisPrimary(
        via_sentinel=isinstance(client, SentinelClient),
        master_name=client.master_name if isinstance(client, SentinelClient) else None,
        address=address,
        known_replicas=known,
        last_failover_at=at,
        last_failover_age_s=None if at is None else max(0.0, now - at),
        failover_from=_text(raw["previous"]) if "previous" in raw else None,
        not_resynced_since=stale,
    )
