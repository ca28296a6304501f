"""Every component through a ``redis+sentinel://`` URL, against a real Sentinel group.

The watcher, a service replica and ``scc inspect`` are given only the Sentinel URL; they
must find the primary by asking the sentinels, before and after the primary is killed.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo import MongoClient

from scc.__main__ import main as scc_main
from shared.clients import REDIS_DOWN_ERRORS, SentinelRedis, make_redis
from shared.settings import RedisSettings
from tests.support.sentinel_fleet import SentinelFleet, running_sentinel_fleet
from tests.support.sentinel_group import SentinelGroup

pytestmark = pytest.mark.e2e
ENV = {"SCC_HEARTBEAT_INTERVAL_MS": "200", "SCC_LEADER_TTL_MS": "1000"}


@pytest.fixture
def ha() -> Iterator[SentinelFleet]:
    """A Sentinel group, the MongoDB double, one watcher and one ready replica on the URL."""
    with running_sentinel_fleet(namespace="ha-url", extra_env=ENV) as started:
        started.fleet.start_watcher("w-1")
        started.fleet.start_replica("r-1")
        yield started


def scc(url: str, *argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``scc`` in process with ``--redis-url url``; status and the parsed JSON output."""
    out = io.StringIO()
    status = scc_main([*argv, "--json", "--redis-url", url, "--namespace", "ha-url"], out=out)
    return status, (json.loads(out.getvalue()) if out.getvalue() else {})


def wait_served(url: str, key: str, version: int, timeout: float = 30.0) -> None:
    """Until the replica at ``url`` serves config ``key`` at ``version``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/configs/{key}", timeout=2)
        last = response.status_code, response.text[:200]
        if response.status_code == 200 and response.json().get("v") == version:
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} v{version} not served within {timeout}s (last {last})")


def _write(ha: SentinelFleet, key: str, version: int) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(ha.fleet.mongo_uri)
    with client:
        coll = client[ha.fleet.database][ha.fleet.collection]
        coll.update_one({"source_id": key}, {"$set": {"v": version}}, upsert=True)


@pytest.mark.timeout(120)
def test_watcher_replica_and_scc_work_through_a_sentinel_url_and_a_primary_kill(
    ha: SentinelFleet,
) -> None:
    """Changes reach the replica and scc reads the fleet via Sentinel, also after a failover."""
    replica = ha.fleet.replicas["r-1"]
    _write(ha, "a", 1)
    wait_served(replica.url, "a", 1)
    status, doc = scc(ha.url, "inspect")
    deadline = time.monotonic() + 15
    while status != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, doc = scc(ha.url, "inspect")
    assert status == 0, doc
    assert doc["leader"]["instance_id"] == "w-1"
    old = ha.group.primary.port
    assert doc["redis"]["address"] == f"127.0.0.1:{old}"
    assert doc["redis"]["via_sentinel"] and doc["redis"]["last_failover_at"] is None

    ha.group.primary.kill()
    new = ha.group.wait_new_primary(old)
    _write(ha, "a", 2)
    wait_served(replica.url, "a", 2)
    deadline = time.monotonic() + 15
    while True:  # the replica and the watcher recorded the switch they heard
        _, doc = scc(ha.url, "inspect")
        seen = doc.get("redis", {})
        if seen.get("last_failover_at"):
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert seen["address"] == f"127.0.0.1:{new}"
    assert seen["failover_from"] == f"127.0.0.1:{old}"
    warmed = {r["instance_id"]: r["warmed_at"] for r in doc["replicas"]}
    expected = [i for i, at in warmed.items() if at is None or at < seen["last_failover_at"]]
    assert seen["not_resynced_since"] == expected


async def test_make_redis_follows_the_primary_the_sentinels_name(
    sentinel_group: SentinelGroup,
) -> None:
    """make_redis on a Sentinel URL writes to the primary, and to the new one after a kill."""
    client = make_redis(RedisSettings(url=SecretStr(sentinel_group.url())), client_name="t")
    assert isinstance(client, SentinelRedis)
    try:
        await client.set("k", "1")
        first = sentinel_group.primary
        with first.client() as direct:
            assert direct.get("k") == b"1"
        first.kill()
        new_port = sentinel_group.wait_new_primary(first.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                await client.set("k", "2")
                break
            except REDIS_DOWN_ERRORS:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        with sentinel_group.node_on(new_port).client() as direct:
            assert direct.get("k") == b"2"
    finally:
        await client.aclose()
