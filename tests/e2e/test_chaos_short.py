"""The chaos suite in the test command: the short profile of every scenario, seed 1.

Each scenario test starts its own fleet of real processes (tests.chaos.rig), injects its
fault, settles, and asserts on the same RunResult ``python -m tests.chaos`` prints: zero
divergences, zero monotonic-read violations, zero stale reads and no broken invariant
(its own and the shared ones). Waits have generous deadlines; nothing asserts on speed.
Below them: the digest's self-test against a real replica (the pure checks test
themselves in test_chaos_checks.py), and regression tests for the bugs the suite found
(decoder crashes on hostile payloads, a replayed key change leaving the old key behind).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from shared.errors import MessageError
from shared.messages import decode
from tests.chaos.digesting import canonical, compare_replica
from tests.chaos.profile import SHORT
from tests.chaos.reporting import RunResult
from tests.chaos.running import run_scenario
from tests.chaos.scenarios import BY_NAME
from tests.support.fleet import running_fleet

SEED = 1
e2e = pytest.mark.e2e


def run(name: str, tmp_path: Path) -> RunResult:
    """Run scenario ``name`` (short profile, seed 1) and fail with its full report if needed."""
    result = run_scenario(BY_NAME[name], profile=SHORT, seed=SEED, workdir_root=tmp_path)
    assert result.divergences == 0, result.describe()
    assert result.ok, result.describe()
    return result


# ------------------------------------------------------------------------ scenarios
@e2e
@pytest.mark.timeout(150)
def test_leader_sigkill_mid_burst_repeated(tmp_path: Path) -> None:
    """Three leader SIGKILLs mid-burst: a successor publishes each time, no replica reloads."""
    result = run("leader-kill", tmp_path)
    assert result.notes["stops"] == f"{SHORT.leader_kills} SIGKILL, 0 SIGTERM"


@e2e
@pytest.mark.timeout(150)
def test_paused_leader_wakes_fenced_and_silent(tmp_path: Path) -> None:
    """A leader SIGSTOPped past its lease publishes nothing and saves no token after SIGCONT."""
    result = run("leader-pause", tmp_path)
    assert result.notes["successor_epoch"] > result.notes["paused_epoch"]
    assert result.notes["script_writes_watched"] > 0  # MONITOR saw the successor's writes


@e2e
@pytest.mark.timeout(150)
def test_redis_restart_mid_burst_reelects_and_resyncs(tmp_path: Path) -> None:
    """Redis restarted empty mid-burst: a watcher is re-elected and resyncs, replicas reload."""
    result = run("redis-restart", tmp_path)
    assert result.resyncs >= 3


@e2e
@pytest.mark.timeout(150)
def test_lost_subscriptions_and_frozen_replica_recover(tmp_path: Path) -> None:
    """Killed pub/sub connections and a replica frozen past 3 heartbeats each end in a resync."""
    result = run("pubsub-loss", tmp_path)
    assert result.notes["pubsub_connections_killed"] >= 3


@e2e
@pytest.mark.timeout(150)
def test_mongodb_faults_resume_or_resync(tmp_path: Path) -> None:
    """Hang-up and step-down are resumed; history lost (twice) and drop end in a resync."""
    result = run("mongo-faults", tmp_path)
    assert result.notes["broadcast_resyncs"].get("history_lost", 0) >= 2


@e2e
@pytest.mark.timeout(150)
def test_watcher_outage_reads_through_then_catches_up(tmp_path: Path) -> None:
    """Every watcher down: replicas go inactive and read MongoDB; a returning watcher catches up."""
    result = run("watchers-down", tmp_path)
    assert result.notes["probe_rounds"] >= 2


@e2e
@pytest.mark.timeout(150)
def test_bad_input_is_counted_never_crashes(tmp_path: Path) -> None:
    """Channel junk and fuzzed blob events: no 5xx, every rejection counted, caches exact."""
    result = run("bad-input", tmp_path)
    assert not any(int(s) >= 500 for s in result.notes["fuzz_statuses"])
    assert result.notes["redis_down_statuses"] == {503: 3}


@e2e
@pytest.mark.timeout(150)
def test_first_event_for_a_new_config_is_never_dead_lettered(tmp_path: Path) -> None:
    """A config created a moment before its first blob event is found: zero dead letters."""
    result = run("read-your-write", tmp_path)
    assert result.notes["created_then_sent"] == SHORT.read_your_writes


@e2e
@pytest.mark.timeout(150)
def test_redis_losing_its_last_writes_is_noticed(tmp_path: Path) -> None:
    """Seq set back in one epoch, then an epoch re-issued: replicas reload, nothing stale."""
    result = run("redis-tail-loss", tmp_path)
    assert "both got epoch" in result.notes["reissued_epoch"]


@e2e
@pytest.mark.timeout(150)
def test_poison_documents_are_carried_or_named_never_fatal(tmp_path: Path) -> None:
    """Year-10000 dates, odd _id types, deep and 15 MiB documents: no crash, caches exact."""
    result = run("poison-documents", tmp_path)
    assert result.notes["pubsub_connections_killed"] >= 3


@e2e
@pytest.mark.timeout(150)
def test_dotted_key_field_routes_and_caches_by_the_nested_key(tmp_path: Path) -> None:
    """The fleet on SCC_KEY_FIELD=meta.sid: events routed to the right config, caches exact."""
    result = run("dotted-key", tmp_path)
    assert result.notes["created_then_routed"] == 10


@e2e
@pytest.mark.timeout(200)
def test_long_redis_outage_then_recovery(tmp_path: Path) -> None:
    """Redis gone for > 10 failed resubscriptions of every replica, then back: 0 divergences."""
    result = run("redis-outage", tmp_path)
    assert min(result.notes["failed_resubscribes"].values()) > SHORT.redis_outage_reconnects


# ---------------------------------------------------------- the checks can fail
@e2e
@pytest.mark.timeout(90)
def test_digest_catches_a_stale_replica(tmp_path: Path) -> None:
    """The digest reports a replica whose cache misses a key, holds an extra one, or differs."""
    env = {"SCC_HEARTBEAT_INTERVAL_MS": "200", "SCC_LEADER_TTL_MS": "1000"}
    with running_fleet(namespace="digest", extra_env=env, workdir=tmp_path) as fleet:
        fleet.start_watcher("w-1")
        replica = fleet.start_replica("r-1")
        with httpx.Client(timeout=5) as client:
            _wait_seq(client, replica.url, 1)
            truth = {"a": canonical({"source_id": "a", "v": 1})}
            missing = compare_replica(client, "r-1", replica.url, truth, [])
            assert not missing.equal and missing.missing == ["a"]
            mongo: MongoClient[dict[str, Any]] = MongoClient(fleet.mongo_uri)
            with mongo:
                mongo[fleet.database][fleet.collection].insert_one({"source_id": "b", "v": 1})
            _wait_seq(client, replica.url, 2)
            extra = compare_replica(client, "r-1", replica.url, {}, ["b"])
            assert not extra.equal and list(extra.extra) == ["b"]
            assert "extra    b" in extra.describe()
            newer = {"b": canonical({"source_id": "b", "v": 2})}
            ids = compare_replica(client, "r-1", replica.url, newer, [])
            assert not ids.equal and list(ids.differ) == ["b"]  # _id and v differ
            assert "differs  b" in ids.describe()


def _wait_seq(client: httpx.Client, url: str, seq: int) -> None:
    deadline = time.monotonic() + 30
    while (client.get(url + "/health/cache").json().get("last_seq") or 0) < seq:
        assert time.monotonic() < deadline, "replica never reached seq {seq}"
        time.sleep(0.05)


# ------------------------------------------------ bugs found (owned elsewhere)
def test_decode_rejects_unhashable_kind() -> None:
    """A message whose kind is an array or an object is a MessageError like any bad field."""
    for raw in (b'{"v":1,"seq":0,"epoch":0,"kind":[]}', b'{"v":1,"seq":0,"epoch":0,"kind":{}}'):
        with pytest.raises(MessageError):
            decode(raw)


def test_decode_rejects_deep_nesting_when_signing() -> None:
    """A signed-looking message nested too deep to re-encode is a MessageError, not a crash."""
    raw = b'{"v":1,"sig":"00","x":' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(MessageError):
        decode(raw, hmac_key=b"k" * 16)


@e2e
@pytest.mark.timeout(90)
def test_replayed_key_change_deletes_the_old_key(tmp_path: Path) -> None:
    """A config renamed while the watcher restarted is gone from replicas under its old key."""
    env = {
        "SCC_HEARTBEAT_INTERVAL_MS": "5000",
        "SCC_LEADER_TTL_MS": "1000",
        "SCC_MAX_AWAIT_MS": "100",
    }
    with running_fleet(namespace="rekey", extra_env=env, workdir=tmp_path) as fleet:
        mongo: MongoClient[dict[str, Any]] = MongoClient(fleet.mongo_uri)
        with mongo:
            coll = mongo[fleet.database][fleet.collection]
            coll.insert_one({"source_id": "old-key", "v": 1})
            watcher = fleet.start_watcher("w-1")
            replica = fleet.start_replica("r-1")  # heartbeats every 5 s: it will not go silent
            with httpx.Client(timeout=5) as client:
                assert client.get(replica.url + "/configs/old-key").status_code == 200
                seq = client.get(replica.url + "/health/cache").json()["last_seq"]
                watcher.stop()  # SIGTERM: publishes what it read, saves its token, releases
                coll.update_one({"source_id": "old-key"}, {"$set": {"source_id": "new-key"}})
                watcher.start()
                _wait_seq(client, replica.url, seq + 1)  # the replayed change arrived
                time.sleep(0.5)
                assert client.get(replica.url + "/configs/old-key").status_code == 404
