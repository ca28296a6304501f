"""Every component through a ``redis+cluster://`` URL, against a real 3-master Redis Cluster.

The fenced scripts must run on the one slot of ``{ns}`` (and still refuse a deposed
leader), the invalidation channel must be a shard channel, and the watcher, a service
replica and ``scc inspect`` must keep working when the master owning that slot dies.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo import MongoClient

from scc.__main__ import main as scc_main
from shared.channels import subscribe
from shared.clients import make_redis
from shared.cluster import is_cluster, slot_owner
from shared.keys import Keys
from shared.settings import RedisSettings
from tests.integration.ha.test_sentinel_url import wait_served
from tests.support.cluster_fleet import ClusterFleet, running_cluster_fleet
from tests.support.fleet import ROOT
from tests.support.redis_cluster import RedisClusterRig
from watcher.electing import RedisLease
from watcher.errors import FencedOut
from watcher.handing_over import HandoverListener
from watcher.publishing import RedisChannel

pytestmark = pytest.mark.e2e
NAMESPACE = "ha-cluster"
ENV = {"SCC_HEARTBEAT_INTERVAL_MS": "200", "SCC_LEADER_TTL_MS": "1000"}


async def test_fenced_scripts_run_on_one_slot_and_refuse_a_deposed_leader(
    redis_cluster: RedisClusterRig,
) -> None:
    """Acquire, publish (SPUBLISH, received by SSUBSCRIBE) and fencing all work in a cluster."""
    keys = Keys(NAMESPACE)
    client = make_redis(RedisSettings(url=SecretStr(redis_cluster.url())), client_name="t")
    assert is_cluster(client)
    pubsub: Any = client.pubsub()
    try:
        await subscribe(client, pubsub, keys.invalidations)
        assert (await pubsub.get_sharded_message(timeout=2))["type"] == "ssubscribe"
        first, second = RedisLease(client, keys, "w-1"), RedisLease(client, keys, "w-2")
        epoch = await first.acquire(5000)
        assert epoch == 1 and await second.acquire(5000) == 0
        channel = RedisChannel(client, keys, "w-1")
        assert await channel.publish(b'{"kind":"heartbeat"}', epoch=epoch, incr=True) == 1
        message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=2)
        assert message["type"] == "smessage" and message["data"].startswith(b'{"seq":1,')
        await client.delete(keys.leader)  # the lease ran out while w-1 was paused
        assert await second.acquire(5000) == 2
        with pytest.raises(FencedOut):
            await channel.publish(b'{"kind":"heartbeat"}', epoch=epoch, incr=True)
        assert int(await client.get(keys.seq)) == 1, "the deposed leader took no seq"
        owner = redis_cluster.owner_of(keys.seq)
        assert slot_owner(client, keys.seq) == ("127.0.0.1", owner.port)
        with owner.client() as direct:  # every key of the namespace lives on that one node
            assert direct.get(keys.epoch) == b"2" and direct.get(keys.leader) == b"w-2"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_a_released_lease_is_announced_on_the_shard_channel(
    redis_cluster: RedisClusterRig,
) -> None:
    """RELEASE announces on {ns}:handover (SPUBLISH); a standby's listener hears it at once."""
    keys = Keys(NAMESPACE)
    client = make_redis(RedisSettings(url=SecretStr(redis_cluster.url())), client_name="t")
    woke, until = asyncio.Event(), asyncio.Event()
    listener = HandoverListener(client, keys.handover, instance_id="w-2", wake=woke.set)
    task = asyncio.create_task(listener.run(until))
    try:
        lease = RedisLease(client, keys, "w-1")
        epoch = await lease.acquire(5000)
        await asyncio.sleep(0.5)  # the listener has subscribed (SSUBSCRIBE) by now
        assert await lease.release(epoch)
        await asyncio.wait_for(woke.wait(), 2)
        assert listener.heard == 1
    finally:
        until.set()
        await asyncio.wait_for(task, 5)
        await client.aclose()


@pytest.fixture
def ha() -> Iterator[ClusterFleet]:
    """A cluster, the MongoDB double, two watchers and one ready replica on the cluster URL."""
    with running_cluster_fleet(namespace=NAMESPACE, extra_env=ENV) as started:
        started.fleet.start_watcher("w-1")
        started.fleet.start_watcher("w-2")
        started.fleet.start_replica("r-1")
        yield started


def _write(ha: ClusterFleet, key: str, version: int) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(ha.fleet.mongo_uri)
    with client:
        coll = client[ha.fleet.database][ha.fleet.collection]
        coll.update_one({"source_id": key}, {"$set": {"v": version}}, upsert=True)


def _wait_listening(ha: ClusterFleet, name: str, timeout: float = 30.0) -> None:
    """Until replica ``name`` reports its stream active at the seq the slot owner holds."""
    owner = ha.cluster.owner_of(Keys(NAMESPACE).seq)
    url = ha.fleet.replicas[name].url
    deadline = time.monotonic() + timeout
    health: Any = None
    while time.monotonic() < deadline:
        with owner.client() as client:
            seq = int(client.get(Keys(NAMESPACE).seq) or 0)
        health = httpx.get(f"{url}/health/cache", timeout=2).json()
        if health.get("change_stream_active") and health.get("last_seq") == seq:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} is not listening on the new owner: {health}")


def _inspect(url: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    status = scc_main(["inspect", "--json", "--redis-url", url, "--namespace", NAMESPACE], out=out)
    return status, (json.loads(out.getvalue()) if out.getvalue() else {})


def _inspect_until_healthy(url: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status, doc = _inspect(url)
    while status != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        status, doc = _inspect(url)
    assert status == 0, doc
    return doc


@pytest.mark.timeout(150)
def test_fleet_follows_a_slot_owner_failover(ha: ClusterFleet) -> None:
    """Changes reach the replica before and after the {ns} slot owner is SIGKILLed."""
    replica = ha.fleet.replicas["r-1"]
    for i in range(5):
        _write(ha, f"k{i}", 1)
    for i in range(5):
        wait_served(replica.url, f"k{i}", 1)
    doc = _inspect_until_healthy(ha.url)
    keys = Keys(NAMESPACE)
    owner = ha.cluster.owner_of(keys.seq)
    assert doc["redis"]["address"] == f"127.0.0.1:{owner.port}"

    owner.kill()
    new_owner = ha.cluster.wait_new_owner(keys.seq, owner)
    for i in range(5):
        _write(ha, f"k{i}", 2)
    for i in range(5):
        wait_served(replica.url, f"k{i}", 2, timeout=60)
    _wait_listening(ha, "r-1")
    doc = _inspect_until_healthy(ha.url, timeout=30)
    assert doc["redis"]["address"] == f"127.0.0.1:{new_owner.port}"
    assert doc["leader"]["instance_id"] in {"w-1", "w-2"}
    assert doc["channel"]["subscribers"] >= 1, "SHARDNUMSUB counts the replica"
    shown = io.StringIO()
    scc_main(["inspect", "--redis-url", ha.url, "--namespace", NAMESPACE], out=shown)
    line = f"primary 127.0.0.1:{new_owner.port} (cluster slot owner, 0 replica(s))"
    assert line in shown.getvalue(), "the promoted replica's old master is dead: no replica"
    err = io.StringIO()
    migrate = ["migrate-keys", "--redis-url", ha.url, "--namespace", NAMESPACE]
    assert scc_main(migrate, out=err) == 1, "a cluster never held the old layout"
    resync = ["resync", "--redis-url", ha.url, "--namespace", NAMESPACE]
    assert scc_main(resync, out=io.StringIO()) == 0, "scc resync publishes (SPUBLISH) on the shard"


@pytest.mark.timeout(150)
def test_fleet_follows_a_planned_cluster_failover(ha: ClusterFleet) -> None:
    """CLUSTER FAILOVER (old owner demoted, not dead): the shard subscription moves with it."""
    replica = ha.fleet.replicas["r-1"]
    _write(ha, "p", 1)
    wait_served(replica.url, "p", 1)
    keys = Keys(NAMESPACE)
    owner = ha.cluster.owner_of(keys.seq)
    promoted = ha.cluster.replica_of(owner)
    with promoted.client() as client:
        client.execute_command("CLUSTER", "FAILOVER")
    assert ha.cluster.wait_new_owner(keys.seq, owner) is promoted
    for version in range(2, 6):
        _write(ha, "p", version)
        wait_served(replica.url, "p", version, timeout=30)
    _wait_listening(ha, "r-1")
    doc = _inspect_until_healthy(ha.url, timeout=30)
    assert doc["channel"]["subscribers"] >= 1, "the replica listens on the new owner"


def test_url_check_runs_before_anything_connects() -> None:
    """A process given a bad cluster URL stops at start with one line naming the variable."""
    env = {"PATH": "", "SCC_REDIS_URL": "redis+cluster://h:1/3", "SCC_MONGODB_URI": "mongodb://x"}
    done = subprocess.run(
        [sys.executable, "-m", "watcher"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SCC_REDIS_URL" in lines[0] and "no /DB path" in lines[0]


#: What deploy/redis-acl.conf says a cluster deployment adds to the ACL user's rules.
CLUSTER_ACL = (
    "+spublish +ssubscribe +sunsubscribe +pubsub|shardnumsub +cluster|slots "
    "+cluster|shards +command +readonly +asking"
)


async def test_the_acl_user_with_the_cluster_additions_runs_the_fenced_path(
    redis_cluster: RedisClusterRig,
) -> None:
    """deploy/redis-acl.conf's user plus its documented cluster rules suffices in a cluster."""
    from tests.deploy.test_redis_acl import ACL_FILE, PASSWORD, RULES

    assert all(rule in ACL_FILE.read_text() for rule in CLUSTER_ACL.split())
    for node in redis_cluster.nodes:
        with node.client() as admin:
            admin.execute_command("ACL", "SETUSER", "scc", *RULES, *CLUSTER_ACL.split())
    keys = Keys("scc")
    url = redis_cluster.url().replace("://", f"://scc:{PASSWORD}@")
    client = make_redis(RedisSettings(url=SecretStr(url)), client_name="acl")
    pubsub: Any = client.pubsub()
    try:
        await subscribe(client, pubsub, keys.invalidations)
        assert (await pubsub.get_sharded_message(timeout=2))["type"] == "ssubscribe"
        epoch = await RedisLease(client, keys, "w-1").acquire(5000)
        assert await RedisChannel(client, keys, "w-1").publish(b'{"k":1}', epoch=epoch, incr=True)
        message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None and message["data"].startswith(b'{"seq":1,')
        assert await client.mget([keys.seq, keys.epoch]) == [b"1", b"1"]
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_events_wait_asks_the_slot_owner_for_its_replicas(
    redis_cluster: RedisClusterRig,
) -> None:
    """SCC_EVENTS_MIN_REPLICAS in a cluster: the WAIT counts the {ns} owner's replica only."""
    from service.event_sinks import NotReplicated, RedisEventSink, StreamLimits

    # A namespace whose slot is not on the first startup node, where redis-py sends a
    # keyless command by default.
    keys = next(
        k
        for k in (Keys(f"ev-{i}") for i in range(50))
        if redis_cluster.owner_of(k.seq) is not redis_cluster.nodes[0]
    )
    client = make_redis(RedisSettings(url=SecretStr(redis_cluster.url())), client_name="t")
    limits = StreamLimits(min_replicas=1, replica_timeout_ms=100)
    sink = RedisEventSink(client, keys, limits=limits)
    try:
        await sink.accepted("s", {"id": "warm"})  # every replica is up: confirmed
        frozen = redis_cluster.replica_of(redis_cluster.owner_of(keys.seq))
        frozen.pause()  # the other masters' replicas still answer any WAIT sent to them
        try:
            for i in range(6):
                with pytest.raises(NotReplicated) as info:
                    await sink.accepted("s", {"id": f"e{i}"})
                assert "confirmed by 0 of 1" in str(info.value)
        finally:
            frozen.resume()
    finally:
        await client.aclose()
