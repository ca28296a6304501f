"""`scc inspect` and `scc replicas` against a real redis-server holding a fake fleet."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.scc.conftest import Deployment
from tests.support.redis_server import RedisServer
from tests.unit.scc.schema_check import validate

pytestmark = pytest.mark.integration


def healthy(d: Deployment, replicas: int = 2) -> int:
    """A leader, a standby, ``replicas`` replicas at seq, each subscribed; returns epoch."""
    d.client.set(d.keys.seq, 41)
    epoch = d.leader("w-1", events_published=41)
    d.watcher("w-2")
    d.save_token("w-1", epoch)
    for n in range(replicas):
        d.replica(f"r-{n}", epoch=epoch)
    d.subscribe(replicas)
    return epoch


def test_in_sync_fleet_exits_0(deployment: Deployment) -> None:
    """Leader, standby and subscribed replicas at seq: `in sync`, exit 0, all shown."""
    healthy(deployment)
    run = deployment.scc("inspect")
    assert run.status == 0, run.out + run.err
    assert "in sync" in run.out and run.err == ""
    for name in ("★ w-1", "w-2", "r-0", "r-1", "{it-scc}:invalidations: 2 subscriber(s)"):
        assert name in run.out, name


def test_stale_replica_is_silent_named_and_exits_1(deployment: Deployment) -> None:
    """A replica whose hash was last written 10 s ago is marked SILENT, named, exit 1."""
    healthy(deployment)
    deployment.replica("r-1", updated_at=time.time() - 10)
    run = deployment.scc("inspect")
    assert run.status == 1
    assert "replica r-1: SILENT — last heartbeat" in run.out
    assert "replica r-0" not in run.out.split("problem(s):")[1]


def test_lagging_replica_is_named_and_exits_1(deployment: Deployment) -> None:
    """A ready replica 11 behind seq that heard nothing for 10 s is LAGGING, exit 1."""
    healthy(deployment)
    deployment.replica("r-0", last_seq=30, last_message_at=time.time() - 10)
    run = deployment.scc("inspect")
    assert run.status == 1
    assert "replica r-0: LAGGING — last_seq 30 is 11 behind seq 41" in run.out


def test_replica_behind_but_hearing_messages_is_in_sync(deployment: Deployment) -> None:
    """Seq moved on since a replica's last hash while it hears heartbeats: not judged."""
    healthy(deployment)
    deployment.client.incrby(deployment.keys.seq, 25)
    run = deployment.scc("inspect")
    assert run.status == 0, run.out


def test_subscriber_missing_is_reported(deployment: Deployment) -> None:
    """Three registered replicas but two subscriptions: the difference is a problem."""
    healthy(deployment)
    deployment.replica("r-2")
    run = deployment.scc("inspect")
    assert run.status == 1
    assert "1 registered replica(s) not listening" in run.out and "difference -1" in run.out


def test_no_leader_is_reported(deployment: Deployment) -> None:
    """Replicas and a standby but no lease holder: no-leader, exit 1."""
    deployment.watcher("w-2")
    deployment.replica("r-0")
    deployment.subscribe(1)
    run = deployment.scc("inspect")
    assert run.status == 1 and "leader: NO-LEADER" in run.out


def test_unreadable_key_is_named_not_a_crash(deployment: Deployment) -> None:
    """A string where a replica hash should be is reported by key, without a traceback."""
    healthy(deployment)
    deployment.client.set(deployment.keys.replica("bogus"), "x")
    deployment.client.set(deployment.keys.seq, "not-a-number")
    run = deployment.scc("inspect", "--json")
    document = json.loads(run.out)
    marks = {(p["subject"], p["mark"]) for p in document["problems"]}
    assert ("{it-scc}:replica:bogus", "unreadable") in marks
    assert ("{it-scc}:seq", "unreadable") in marks
    assert run.status == 1 and run.err == ""


def test_nothing_deployed_exits_2(deployment: Deployment) -> None:
    """A namespace with state but no leader, watcher or replica key: one line, exit 2."""
    deployment.client.set(deployment.keys.seq, 7)
    run = deployment.scc("inspect")
    assert run.status == 2 and run.out == ""
    assert run.err == (
        f"scc: nothing deployed under namespace 'it-scc' at {deployment.url}: no leader, "
        "watcher or replica keys (seq 7 and other state remain); wrong --namespace, or all "
        "stopped?\n"
    )


def test_stopped_redis_is_one_line_exit_2(
    deployment: Deployment, redis_server: RedisServer
) -> None:
    """With Redis stopped: one `cannot reach Redis` line, no traceback, no password."""
    redis_server.stop()
    url = f"redis://:hunter22@127.0.0.1:{redis_server.port}/0"
    for argv in (["inspect"], ["replicas"], ["resync"], ["token", "show"], ["dlq"]):
        run = deployment.scc(*argv, url=url)
        assert run.status == 2, argv
        assert run.err.startswith(
            f"scc: cannot reach Redis at redis://:***@127.0.0.1:{redis_server.port}/0 "
            "(ConnectionError: "
        ), run.err
        assert run.err.count("\n") == 1 and "hunter22" not in run.err + run.out


def test_rejected_credentials_are_one_line_exit_2(deployment: Deployment) -> None:
    """An unknown ACL user is an AuthenticationError line, password redacted, exit 2."""
    url = deployment.url.replace("redis://", "redis://bob:hunter22@")
    run = deployment.scc("inspect", url=url)
    assert run.status == 2
    assert "(AuthenticationError: " in run.err and "bob:***@" in run.err
    assert "hunter22" not in run.err


def test_hung_redis_times_out_exit_2(deployment: Deployment, redis_server: RedisServer) -> None:
    """A Redis that accepts but never answers ends in a TimeoutError line after --timeout."""
    healthy(deployment)
    redis_server.pause()
    try:
        run = deployment.scc("inspect", "--timeout", "0.3")
    finally:
        redis_server.resume()
    assert run.status == 2 and "(TimeoutError: " in run.err


def test_json_validates_and_carries_everything(deployment: Deployment) -> None:
    """--json is one schema-valid document with leader, token, fleet, channel and DLQ."""
    epoch = healthy(deployment)
    deployment.replica("r-1", updated_at=time.time() - 10)
    deployment.client.xadd(deployment.keys.events_dlq, {"reason": "[red]disabled[/]", "x": "1"})
    deployment.client.xadd(deployment.keys.events_accepted, {"source_id": "s-1"})
    run = deployment.scc("inspect", "--json")
    assert run.status == 1 and "\x1b" not in run.out
    document = json.loads(run.out)
    validate(document)
    assert document["leader"]["instance_id"] == "w-1" and document["epoch"] == epoch
    assert 0 < document["leader"]["lease_ms_left"] <= 10_000
    assert document["resume"]["saved_by"] == "w-1" and document["resume"]["epoch"] == epoch
    assert document["seq"] == 41 and document["channel"]["subscribers"] == 2
    assert [r["marks"] for r in document["replicas"]] == [[], ["silent"]]
    assert document["dlq"]["newest"][0]["reason"] == "[red]disabled[/]"
    assert document["accepted"]["length"] == 1
    assert document["problems"] == [
        {"subject": "replica r-1", "mark": "silent", "detail": document["problems"][0]["detail"]}
    ]


def test_watch_redraws_then_stops(deployment: Deployment) -> None:
    """--watch with --iterations redraws that many times and exits with the last status."""
    healthy(deployment)
    run = deployment.scc("inspect", "--watch", "--iterations", "2", "--interval", "0.05")
    assert run.status == 0 and "in sync" in run.out


def test_replicas_command_shows_the_table_and_judges_replicas_only(
    deployment: Deployment,
) -> None:
    """`scc replicas` lists replicas and exits 1 for a silent one, ignoring watchers."""
    healthy(deployment)
    deployment.watcher("w-2", updated_at=time.time() - 60)
    assert deployment.scc("replicas").status == 0
    deployment.replica("r-0", updated_at=time.time() - 10)
    run = deployment.scc("replicas")
    assert run.status == 1
    assert "replica r-0: SILENT" in run.out and "w-2" not in run.out
    assert "{it-scc}:invalidations: 2 subscriber(s) for 2 registered replica(s)" in run.out
