"""The Redis-failover chaos scenarios in the test command: short profile, seed 1.

Each test starts a real Sentinel group (1 primary, 2 replicas, 3 sentinels), the MongoDB
double, two watchers and three replicas that reach Redis only by ``redis+sentinel://``,
injects its fault with the writer running, settles, and asserts on the RunResult
``python -m tests.chaos`` prints: zero divergences and no broken invariant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_chaos_short import e2e, run  # one runner for every short scenario


@e2e
@pytest.mark.timeout(180)
def test_primary_sigkill_mid_burst_fails_over_and_converges(tmp_path: Path) -> None:
    """SIGKILL of the Redis primary: Sentinel promotes, a leader publishes, caches stay exact."""
    result = run("sentinel-kill", tmp_path)
    assert "first_message_after_kill_s" in result.notes


@e2e
@pytest.mark.timeout(180)
def test_planned_failover_leaves_the_demoted_primary_at_once(tmp_path: Path) -> None:
    """SENTINEL FAILOVER: within a second no process is connected to the old primary."""
    result = run("sentinel-switch", tmp_path)
    assert "sentinel_switch_s" in result.notes


@e2e
@pytest.mark.timeout(180)
def test_primary_cut_off_from_replicas_and_sentinels_elects_nobody_new(tmp_path: Path) -> None:
    """Replicas and sentinels frozen, the leader's lease lapsed: no newer term speaks until
    they are healed; then a new term begins and caches stay exact."""
    result = run("sentinel-partition", tmp_path)
    assert "epoch_before_during" in result.notes


@e2e
@pytest.mark.timeout(180)
def test_subscribers_on_redis_replicas_survive_a_replica_restart(tmp_path: Path) -> None:
    """Subscriptions on Redis replicas; the busiest one restarted mid-burst: caches stay exact."""
    result = run("replica-subscribers", tmp_path)
    assert result.notes["moved"] >= 1
