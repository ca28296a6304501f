"""``python -m watcher`` as real processes: configuration errors, SIGTERM, SIGKILL, SIGSTOP."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from pymongo import AsyncMongoClient

from tests.integration.watcher.rig import (
    COLLECTION,
    DB,
    KEYS,
    ROOT,
    Child,
    collecting,
    eventually,
    process_env,
)
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop()


def spawn(
    children: list[Child], tmp_path: Path, redis_url: str, mongo_uri: str, name: str, **env: str
) -> Child:
    child = Child(
        name, process_env(redis_url, mongo_uri, name, port=free_port(), **env), tmp_path / name
    )
    children.append(child.start())
    return child


def leader(redis_url: str) -> str | None:
    with sync_redis.Redis.from_url(redis_url) as client:
        value = client.get(KEYS.leader)
    return None if value is None else value.decode()


def streaming(redis_url: str) -> bool:
    """Whether the leader's change stream is open: a first leader saves its token right
    after opening it (a change written before that is covered by the ``no_token`` resync,
    not published, so a test that waits for its message must wait for this first)."""
    with sync_redis.Redis.from_url(redis_url) as client:
        return client.hget(KEYS.resume, "token") is not None


def test_bad_configuration_prints_one_line_and_exits_2() -> None:
    """A malformed setting: exactly one line on stderr naming it, exit status 2."""
    env = {"PATH": "/usr/bin:/bin", "SCC_MONGODB_URI": "mongodb://x", "SCC_LEADER_TTL_MS": "soon"}
    done = subprocess.run(
        [sys.executable, "-m", "watcher"], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "SCC_LEADER_TTL_MS" in lines[0], lines
    assert done.stdout == b""


def test_check_without_an_instance_id_is_refused() -> None:
    """``--check`` needs SCC_INSTANCE_ID; without it the probe says so and exits 2."""
    env = {"PATH": "/usr/bin:/bin", "SCC_MONGODB_URI": "mongodb://x"}
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "--check"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and b"SCC_INSTANCE_ID" in done.stderr


def test_help_describes_the_command() -> None:
    """``--help`` prints usage naming the check flag and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "--help"], cwd=ROOT, capture_output=True, timeout=60
    )
    assert done.returncode == 0 and b"--check" in done.stdout


async def test_it_leads_and_sigterm_exits_0_after_releasing_the_lease(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path, children: list[Child]
) -> None:
    """A real process leads, its ``--check`` passes; SIGTERM → lease released, exit 0."""
    w = spawn(children, tmp_path, redis_url, mongo_double.uri, "solo")
    await eventually(lambda: leader(redis_url) == "solo", within=20)
    check = Child("check", w.env, tmp_path / "check").start("--check")
    assert await asyncio.to_thread(check.wait) == 0, check.output()
    w.send(signal.SIGTERM)
    assert await asyncio.to_thread(w.wait) == 0, w.output()[-3000:]
    assert leader(redis_url) is None
    events = [e["event"] for e in w.log_events()]
    assert "lease released" in events
    check = Child("check2", w.env, tmp_path / "check2").start("--check")
    assert await asyncio.to_thread(check.wait) == 1


async def test_1000_changes_across_a_leader_kill_are_all_published_gap_free(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path, children: list[Child]
) -> None:
    """SIGKILL the leader mid-burst: every change still published, seq gap-free, token monotone."""
    a = spawn(children, tmp_path, redis_url, mongo_double.uri, "a")
    await eventually(lambda: leader(redis_url) == "a", within=20)
    b = spawn(children, tmp_path, redis_url, mongo_double.uri, "b")
    tokens: list[str] = []
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    stop_watch = asyncio.Event()

    async def watch_token() -> None:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(redis_url)
        try:
            while not stop_watch.is_set():
                raw = await r.hget(KEYS.resume, "token")
                if raw is not None and (not tokens or tokens[-1] != raw.decode()):
                    tokens.append(raw.decode())
                await asyncio.sleep(0.005)
        finally:
            await r.aclose()

    try:
        async with collecting(redis_url) as seen:
            await eventually(lambda: streaming(redis_url), within=20)
            watcher_task = asyncio.create_task(watch_token(), name="itest.token-watch")
            try:
                for n in range(1000):
                    await coll.insert_one({"_id": n, "source_id": f"k{n}", "n": n})
                    if n == 400:
                        a.send(signal.SIGKILL)
                        killed = time.monotonic()
                await eventually(lambda: leader(redis_url) == "b", within=10)
                took_over = time.monotonic() - killed
                await eventually(lambda: seen.keys() >= {f"k{n}" for n in range(1000)}, 30)
            finally:
                stop_watch.set()
                await watcher_task
        seqs = [m.seq for m in seen.messages if m.kind != "heartbeat"]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq has a gap"
        epochs = [m.epoch for m in seen.changes()]
        assert epochs == sorted(epochs) and len(set(epochs)) == 2
        positions = [json.loads(t)["_data"] for t in tokens]
        assert positions == sorted(positions), "the stored token moved backwards"
        assert took_over < 5.0, f"handover took {took_over:.2f}s"
    finally:
        await client.close()
    assert b.proc is not None and b.proc.poll() is None


async def test_a_leader_paused_past_its_ttl_publishes_nothing_after_it_wakes(
    redis_url: str, mongo_double: MongoDouble, tmp_path: Path, children: list[Child]
) -> None:
    """SIGSTOP the leader past its TTL: after SIGCONT it sends nothing and the token stays put."""
    a = spawn(children, tmp_path, redis_url, mongo_double.uri, "a")
    await eventually(lambda: leader(redis_url) == "a", within=20)
    spawn(children, tmp_path, redis_url, mongo_double.uri, "b")
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with collecting(redis_url) as seen:
            await eventually(lambda: streaming(redis_url), within=20)
            await coll.insert_one({"_id": 0, "source_id": "k0"})
            await eventually(lambda: "k0" in seen.keys(), within=20)
            a_epoch = seen.changes()[-1].epoch
            a.send(signal.SIGSTOP)
            await eventually(lambda: leader(redis_url) == "b", within=10)
            for n in range(1, 20):
                await coll.insert_one({"_id": n, "source_id": f"k{n}"})
            await eventually(lambda: f"k{19}" in seen.keys(), within=20)
            a.send(signal.SIGCONT)
            await asyncio.sleep(1.0)  # a wakes up with a stale lease and buffered work
            for n in range(20, 30):
                await coll.insert_one({"_id": n, "source_id": f"k{n}"})
            await eventually(lambda: "k29" in seen.keys(), within=20)
        order = [m.epoch for m in seen.messages]
        first_b = next(i for i, e in enumerate(order) if e > a_epoch)
        assert a_epoch not in order[first_b:], "the paused leader published after waking"
        with sync_redis.Redis.from_url(redis_url) as r:
            saved = r.hgetall(KEYS.resume)
        assert saved[b"saved_by"] == b"b" and int(saved[b"epoch"]) > a_epoch
        assert a.proc is not None and a.proc.poll() is None  # alive, standing by
        events = {e["event"] for e in a.log_events()}
        assert events & {
            "leadership lost",
            "stepped down",
            "leadership revoked; leader work cancelled",
        }
    finally:
        await client.close()
