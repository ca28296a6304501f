"""The cluster client turns redis-py's "connection closed under a command" into a RedisError."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.clients import make_redis
from shared.cluster import is_cluster
from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.settings import RedisSettings
from watcher.electing import RedisLease

CLOSED = AttributeError("'NoneType' object has no attribute 'writelines'")


def _cluster() -> Any:
    url = "redis+cluster://127.0.0.1:1,127.0.0.1:2"  # never connected in these tests
    return make_redis(RedisSettings(url=SecretStr(url)), client_name="t")


async def test_a_command_on_a_connection_closed_under_it_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lease renew hit by the failover race fails as StoreUnavailable, not AttributeError."""

    async def closed(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise CLOSED

    monkeypatch.setattr(RedisCluster, "execute_command", closed)
    client = _cluster()
    assert is_cluster(client)
    with pytest.raises(RedisConnectionError, match="closed under a command"):
        await client.get("k")
    with pytest.raises(StoreUnavailable):
        await RedisLease(client, Keys("scc"), "w-1").renew(1, 1000)


async def test_a_pipeline_on_a_connection_closed_under_it_is_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same race inside a pipeline (status writers) surfaces as a ConnectionError."""

    async def closed(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise CLOSED

    monkeypatch.setattr(ClusterPipeline, "execute", closed)
    pipe = _cluster().pipeline(transaction=False)
    pipe.get("{scc}:seq")
    with pytest.raises(RedisConnectionError, match="closed under a command"):
        await pipe.execute()
