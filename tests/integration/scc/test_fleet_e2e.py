"""`scc` against real watcher and replica processes (tests.support.fleet), end to end."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scc.__main__ import main
from tests.support.fleet import Fleet, running_fleet
from tests.unit.scc.schema_check import validate

pytestmark = pytest.mark.e2e
BEAT_MS = "200"


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """Redis, the MongoDB double, one watcher and two ready replicas, all real processes."""
    env = {"SCC_HEARTBEAT_INTERVAL_MS": BEAT_MS, "SCC_LEADER_TTL_MS": "1000"}
    with running_fleet(namespace="e2e-scc", extra_env=env) as started:
        started.start_watcher("w-1")
        started.start_replica("r-1")
        started.start_replica("r-2")
        yield started


def scc(fleet: Fleet, *argv: str) -> tuple[int, str]:
    assert fleet.redis is not None
    out = io.StringIO()
    status = main([*argv, "--redis-url", fleet.redis.url, "--namespace", fleet.namespace],
                  out=out)  # fmt: skip
    return status, out.getvalue()


def inspect_until(
    fleet: Fleet, done: Callable[[int, dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    """Poll `scc inspect --json` until ``done(status, document)``; the last document."""
    deadline = time.monotonic() + timeout
    while True:
        status, out = scc(fleet, "inspect", "--json", "--heartbeat-interval-ms", BEAT_MS)
        document: dict[str, Any] = json.loads(out) if out else {}
        if out and done(status, document):
            validate(document)
            return document
        assert time.monotonic() < deadline, f"last status {status}: {out[-3000:]}"
        time.sleep(0.1)


def test_live_fleet_in_sync_then_resync_then_a_stopped_replica(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real fleet: in sync (0); scc resync reloads both replicas; a killed replica is named."""
    first = inspect_until(fleet, lambda status, _: status == 0)
    assert first["leader"]["instance_id"] == "w-1"
    assert [r["instance_id"] for r in first["replicas"]] == ["r-1", "r-2"]

    status, out = scc(fleet, "resync", "--reason", "e2e")
    assert status == 0, capsys.readouterr().err
    seq = first["seq"] + 1 if first["seq"] is not None else 1
    assert f"seq {seq}," in out
    inspect_until(
        fleet,
        lambda status, doc: (
            status == 0 and all(r["last_seq"] == seq and r["resyncs"] >= 1 for r in doc["replicas"])
        ),
    )

    fleet.replicas["r-2"].stop(kill=True)
    stopped = inspect_until(fleet, lambda _, doc: "silent" in doc["replicas"][1]["marks"])
    assert stopped["channel"]["difference"] == -1
    status, out = scc(fleet, "replicas", "--heartbeat-interval-ms", BEAT_MS)
    assert status == 1 and "replica r-2: SILENT" in out
