"""The chaos suite in the test command: the short profile of all eight scenarios, seed 1.

Each scenario test starts its own fleet of real processes (tests.chaos.rig), injects its
fault, settles, and asserts on the same RunResult ``python -m tests.chaos`` prints: zero
divergences and no broken invariant (its own and the shared ones). Waits have generous
deadlines; nothing asserts on speed. Below them: self-tests of the suite's checks (so a
check that can never fail is caught), and regression tests for the bugs the suite found
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
from tests.chaos.digesting import canonical, compare_replica, digest_of
from tests.chaos.observing import Seen, _monitor_args, ordering_violations, replica_epoch_violations
from tests.chaos.probing import Metrics, delta, parse_metrics
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
    """Three leader SIGKILLs mid-burst: a successor publishes each time, caches stay exact."""
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


# ---------------------------------------------------------- the checks can fail
def _seen(
    seq: int, epoch: int, kind: str = "upsert", *, session: int = 1, run_id: str = "a"
) -> Seen:
    return Seen(0.0, 0.0, run_id, session, 10, seq=seq, epoch=epoch, kind=kind)


def test_ordering_check_flags_gaps_and_epoch_regressions() -> None:
    """The channel check reports a skipped seq, a backwards epoch and a heartbeat off the seq."""
    good = [_seen(1, 1), _seen(1, 1, "heartbeat"), _seen(2, 2), _seen(3, 2, "delete")]
    assert ordering_violations(good) == []
    assert ordering_violations([_seen(1, 1), _seen(3, 1)]) == [
        "seq gap on the channel: 1 then 3 (upsert, epoch 1)"
    ]
    assert "epoch went backwards" in ordering_violations([_seen(1, 2), _seen(2, 1)])[0]
    assert (
        "heartbeat carries seq 5" in ordering_violations([_seen(1, 1), _seen(5, 1, "heartbeat")])[0]
    )
    # A new Redis (run id) or a new subscription session starts the count again.
    assert (
        ordering_violations(
            [_seen(7, 3), _seen(1, 1, run_id="b"), _seen(9, 1, run_id="b", session=2)]
        )
        == []
    )


def test_replica_epoch_check_allows_only_redis_resets() -> None:
    """A replica's epoch may drop only across a recorded Redis reset."""
    from tests.chaos.observing import HealthSample

    samples = [HealthSample(1.0, "r-1", True, 5, 3), HealthSample(2.0, "r-1", True, 6, 2)]
    assert replica_epoch_violations(samples, resets=[]) == ["r-1: leader_epoch 3 then 2"]
    assert replica_epoch_violations(samples, resets=[1.5]) == []


def test_monitor_lines_are_parsed_with_escapes() -> None:
    """MONITOR's quoted arguments (with escaped quotes) come back as the strings sent."""
    line = '"HSET" "chaos:resume" "token" "{\\"_data\\": \\"82\\"}" "saved_by" "w-1"'
    assert _monitor_args(line) == (
        "HSET",
        "chaos:resume",
        "token",
        '{"_data": "82"}',
        "saved_by",
        "w-1",
    )


def test_metrics_parse_and_delta_by_label() -> None:
    """Prometheus text is parsed per series and differences are taken per label value."""
    before = Metrics(
        parse_metrics('# HELP x\nscc_x_total{reason="gap"} 1.0\nscc_x_total{reason="silent"} 2.0\n')
    )
    after = Metrics(
        parse_metrics('scc_x_total{reason="gap"} 4.0\nscc_x_total{reason="silent"} 2.0\nscc_y 7\n')
    )
    assert delta(after, before, "scc_x_total", "reason") == {"gap": 3.0, "silent": 0.0}
    assert delta(after, before, "scc_x_total") == 3.0
    assert after.total("scc_y") == 7.0


def test_digest_is_order_free_and_sensitive_to_values() -> None:
    """Canonical documents ignore field order; any value change changes the digest."""
    assert canonical({"a": 1, "b": {"c": 2}}) == canonical({"b": {"c": 2}, "a": 1})
    base = {"k": canonical({"a": 1})}
    assert digest_of(base) != digest_of({"k": canonical({"a": 2})})
    assert digest_of(base) != digest_of({**base, "k2": canonical({})})


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
