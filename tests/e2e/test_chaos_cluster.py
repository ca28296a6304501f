"""The Redis Cluster chaos scenario in the test command: short profile, seed 1.

The test starts a real 3-master, 3-replica Redis Cluster, the MongoDB double, two watchers
and three replicas that reach Redis only by ``redis+cluster://``, kills the master owning
the namespace's slot with the writer running, settles, and asserts on the RunResult
``python -m tests.chaos`` prints: zero divergences and no broken invariant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_chaos_short import e2e, run  # one runner for every short scenario


@e2e
@pytest.mark.timeout(180)
def test_slot_owner_sigkill_mid_burst_fails_over_and_converges(tmp_path: Path) -> None:
    """SIGKILL of the {ns} slot owner: the cluster promotes, a leader publishes, caches exact."""
    result = run("cluster-failover", tmp_path)
    assert "first_message_after_kill_s" in result.notes
