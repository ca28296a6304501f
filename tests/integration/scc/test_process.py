"""`python -m scc inspect --json` as a real process, configured by SCC_* variables only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.scc.conftest import NAMESPACE, Deployment
from tests.unit.scc.schema_check import validate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def test_subprocess_inspect_json_is_valid_and_exits_0(deployment: Deployment) -> None:
    """A real `python -m scc inspect --json` on an in-sync fleet prints a valid document."""
    deployment.client.set(deployment.keys.seq, 3)
    epoch = deployment.leader("w-1")
    deployment.replica("r-0", epoch=epoch)
    deployment.subscribe(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCC_")}
    # A 5 s heartbeat (silent after 15 s): a slow interpreter start cannot make r-0 silent.
    env.update(
        SCC_REDIS_URL=deployment.url, SCC_NAMESPACE=NAMESPACE, SCC_HEARTBEAT_INTERVAL_MS="5000"
    )
    done = subprocess.run(
        [sys.executable, "-m", "scc", "inspect", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    document = json.loads(done.stdout)
    validate(document)
    assert document["in_sync"] and document["namespace"] == NAMESPACE
    assert [r["instance_id"] for r in document["replicas"]] == ["r-0"]
