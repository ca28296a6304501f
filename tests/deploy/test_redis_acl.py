"""deploy/redis-acl.conf: the documented ACL user can run the whole system and nothing more.

A real ``redis-server`` is started with the file as its configuration (the way the file
says to load it), and a client logged in as that user drives every Redis operation the
system performs — the fenced Lua scripts, heartbeats, streams, pub/sub — then tries to
step outside its namespace. Redis checks ACLs inside scripts too, so a missing command
or pattern in the file fails here, not in production.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import SecretStr

from service.event_sinks import RedisEventSink, StreamLimits
from shared import scripts
from shared.clients import make_redis
from shared.keys import Keys
from shared.settings import RedisSettings
from tests.deploy.support import REPO
from tests.support.redis_server import free_port, redis_binary

pytestmark = pytest.mark.integration

ACL_FILE = REPO / "deploy" / "redis-acl.conf"


def _user_line() -> tuple[str, list[str]]:
    (line,) = [ln for ln in ACL_FILE.read_text().splitlines() if ln.startswith("user ")]
    _, name, *rules = line.split()
    return name, rules


USER, RULES = _user_line()
(PASSWORD,) = [rule[1:] for rule in RULES if rule.startswith(">")]


@pytest.fixture(scope="module")
def acl_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server configured by deploy/redis-acl.conf, on a free port."""
    binary = redis_binary()
    if binary is None:
        message = "redis-server is not on PATH (apt-get install -y redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("redis-acl")
    proc = subprocess.Popen(
        [binary, str(ACL_FILE), "--port", str(port), "--bind", "127.0.0.1"]
        + ["--save", "", "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"redis-server refused {ACL_FILE.name}: {output[-500:]}")
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.2) as admin:
                    admin.ping()
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def admin(acl_port: int) -> Iterator[redis.Redis]:
    """The default (unrestricted) user, emptying the database before each test."""
    with redis.Redis(port=acl_port) as client:
        client.flushall()
        yield client


@pytest.fixture
async def confined(acl_port: int, admin: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    """A client built the way the processes build theirs, logged in as the ACL user."""
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_port}/0"
    client = make_redis(RedisSettings(url=SecretStr(url)), client_name="acl-test")
    try:
        yield client
    finally:
        await client.aclose()


def test_the_file_holds_one_user_confined_to_the_default_namespace() -> None:
    """The user line resets keys and channels, then allows only ``{scc}:*`` and no categories."""
    assert USER == "scc"
    assert RULES[0] == "on"
    assert {"resetkeys", "resetchannels", "~{scc}:*", "&{scc}:*", "-@all"} <= set(RULES)
    assert not [r for r in RULES if r.startswith("+@") or r in {"allkeys", "allchannels"}]
    assert not [r for r in RULES if r.startswith("~") and r != "~{scc}:*"]


def test_redis_loads_the_user_with_exactly_the_listed_commands(
    admin: redis.Redis,
) -> None:
    """ACL GETUSER shows the user enabled, confined, with no command beyond the file's."""
    info = admin.acl_getuser(USER)
    assert info is not None and "on" in info["flags"]
    assert info["keys"] == ["~{scc}:*"] and info["channels"] == ["&{scc}:*"]
    listed = {r[1:] for r in RULES if r.startswith("+")}
    commands = info["commands"]
    text = " ".join(commands) if isinstance(commands, list) else str(commands)
    granted = set(re.findall(r"\+([\w|@]+)", text))
    assert "client|setname" in granted and "evalsha" in granted
    assert granted - {"@transaction"} <= listed | {"multi", "exec", "discard"}


async def test_the_user_runs_every_fenced_script(confined: aioredis.Redis) -> None:
    """ACQUIRE, RENEW, PUBLISH (delivered to a subscriber), SAVE_TOKEN and RELEASE all work."""
    keys = Keys("scc")
    acquire = confined.register_script(scripts.ACQUIRE)
    renew = confined.register_script(scripts.RENEW)
    publish = confined.register_script(scripts.PUBLISH)
    save = confined.register_script(scripts.SAVE_TOKEN)
    release = confined.register_script(scripts.RELEASE)
    pubsub = confined.pubsub()
    try:
        await pubsub.subscribe(keys.invalidations)
        confirmation = await pubsub.get_message(timeout=2)
        assert confirmation is not None and confirmation["type"] == "subscribe"
        epoch = await acquire(keys=[keys.leader, keys.epoch], args=["w-1", 5000])
        assert epoch == 1
        assert await renew(keys=[keys.leader, keys.epoch], args=["w-1", epoch, 5000]) == 1
        seq, receivers = await publish(
            keys=[keys.leader, keys.epoch, keys.seq],
            args=["w-1", epoch, keys.invalidations, '{"v":1,"kind":"resync"}', "1"],
        )
        assert (seq, receivers) == (1, 1)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None and message["data"] == b'{"seq":1,"v":1,"kind":"resync"}'
        saved = await save(
            keys=[keys.leader, keys.epoch, keys.resume],
            args=["w-1", epoch, '{"_data":"82"}', "", "1700000000.0"],
        )
        assert saved == 1
        assert await release(keys=[keys.leader, keys.epoch], args=["w-1", epoch]) == 1
        assert await confined.mget([keys.leader, keys.epoch]) == [None, b"1"]
    finally:
        await pubsub.aclose()


async def test_the_user_runs_the_events_store_script_with_every_cap(
    confined: aioredis.Redis, admin: redis.Redis
) -> None:
    """De-duplication, count/age/byte trimming with a consumer group, and WAIT all work."""
    keys = Keys("scc")
    await confined.xadd(keys.events_accepted, {"event_id": "seed"})
    admin.xgroup_create(keys.events_accepted, "ingest", id="0")  # the consumer's own user
    limits = StreamLimits(
        maxlen=1000, max_age_s=3600, max_bytes=1, consumer_group="ingest", dedup_window_s=60
    )
    sink = RedisEventSink(confined, keys, limits=limits)
    for i in range(70):
        assert (
            await sink.accepted("s", {"event_id": str(i), "event": b"{}"}, dedup_key=str(i)) is None
        )
    assert await sink.accepted("s", {"event_id": "0", "event": b"{}"}, dedup_key="0") == b""
    assert await confined.xlen(keys.events_accepted) < 64  # the byte cap trimmed at 64
    assert sink.trims.removed_unread["accepted"] == sink.trims.removed["accepted"] >= 63
    assert await confined.execute_command("WAIT", 0, 10) == 0


async def test_the_user_writes_and_reads_heartbeats_and_event_streams(
    confined: aioredis.Redis,
) -> None:
    """Heartbeat hashes (pipelined), SCAN, PTTL, capped streams and PUBSUB NUMSUB all work."""
    keys = Keys("scc")
    async with confined.pipeline(transaction=True) as pipe:
        pipe.hset(keys.replica("r-1"), mapping={"cache_size": "12", "last_seq": "7"})
        pipe.expire(keys.replica("r-1"), 5)
        await pipe.execute()
    found = [k async for k in confined.scan_iter(match=keys.replica_pattern)]
    assert found == [keys.replica("r-1").encode()]
    assert await confined.hgetall(keys.replica("r-1")) == {b"cache_size": b"12", b"last_seq": b"7"}
    assert 0 < await confined.pttl(keys.replica("r-1")) <= 5000
    await confined.xadd(keys.events_dlq, {"reason": "no_match"}, maxlen=100, approximate=True)
    assert await confined.xlen(keys.events_dlq) == 1
    (entry,) = await confined.xrevrange(keys.events_dlq, count=1)
    assert entry[1] == {b"reason": b"no_match"}
    assert await confined.pubsub_numsub(keys.invalidations) == [(keys.invalidations.encode(), 0)]
    seconds, _ = await confined.time()
    assert seconds > 0
    assert await confined.ping()


async def test_the_user_cannot_leave_its_namespace(
    confined: aioredis.Redis, admin: redis.Redis
) -> None:
    """Keys, channels and scripts outside ``{scc}:*`` and admin commands are all refused."""
    admin.set("other:secret", "x")
    admin.set("scc:leader", "x")  # the layout before the hash tag is outside it too
    refused = [
        confined.get("other:secret"),
        confined.get("scc:leader"),
        confined.set("other:key", "1"),
        confined.publish("other:channel", "hello"),
        confined.flushall(),
        confined.keys("*"),
        confined.config_get("*"),
        confined.execute_command("CLIENT", "KILL", "ID", "1"),
        confined.register_script(scripts.ACQUIRE)(
            keys=["other:leader", "other:epoch"], args=["w", 1000]
        ),
    ]
    for call in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            await call
    pubsub = confined.pubsub()
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            await pubsub.subscribe("other:invalidations")
            await asyncio.wait_for(pubsub.get_message(timeout=1), timeout=2)
    finally:
        await pubsub.aclose()
    assert admin.get("other:key") is None


async def test_changing_the_patterns_as_documented_moves_the_user_to_another_namespace(
    acl_port: int, admin: redis.Redis
) -> None:
    """Replacing ``{scc}`` in both patterns (the file's instructions) confines a user to it."""
    text = ACL_FILE.read_text()
    assert "~{payments-scc}:* &{payments-scc}:*" in text, "the adaptation example moved"
    rules = [
        r.replace("~{scc}:*", "~{payments-scc}:*").replace("&{scc}:*", "&{payments-scc}:*")
        for r in RULES
    ]
    admin.acl_setuser("payments", reset=True)
    admin.execute_command("ACL", "SETUSER", "payments", *rules)
    url = f"redis://payments:{PASSWORD}@127.0.0.1:{acl_port}/0"
    client = make_redis(RedisSettings(url=SecretStr(url)), client_name="acl-test")
    try:
        keys = Keys("payments-scc")
        acquire = client.register_script(scripts.ACQUIRE)
        assert await acquire(keys=[keys.leader, keys.epoch], args=["w-1", 5000]) == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            await client.get(Keys("scc").leader)
    finally:
        await client.aclose()
        admin.acl_deluser("payments")


async def test_the_user_takes_announces_and_records_a_lease_as_a_watcher_does(
    confined: aioredis.Redis,
) -> None:
    """RedisLease (INFO, ACQUIRE + WAIT, RELEASE + PUBLISH) and HGET run as the ACL user."""
    from shared.keys import Keys
    from watcher.electing import RedisLease

    keys = Keys("scc")
    lease = RedisLease(confined, keys, "w-acl")
    epoch = await lease.acquire(5000)
    assert epoch > 0
    assert await lease.release(epoch)
    assert await confined.hget(keys.failover, "primary") is None
