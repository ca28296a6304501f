"""Running scenarios: one rig per (scenario, seed), results collected, never an exception.

Why it exists: the command line and the pytest entry both run a scenario the same way,
and both need a result even when the harness itself breaks (then the traceback is the
violation), so the table always prints and the pytest failure always explains itself.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from tests.chaos.errors import ChaosError
from tests.chaos.profile import Profile
from tests.chaos.reporting import RunResult
from tests.chaos.scenarios import Scenario


def run_scenario(
    scenario: Scenario, *, profile: Profile, seed: int, workdir_root: Path | None = None
) -> RunResult:
    """Start a fleet, inject ``scenario``'s fault, settle, judge, stop everything."""
    rig = scenario.rig(
        scenario=scenario.name,
        seed=seed,
        profile=profile,
        workdir_root=workdir_root,
        extra_env=scenario.extra_env,
    )
    try:
        rig.start()
        scenario.run(rig)
        rig.settle()
    except ChaosError as e:
        rig.check(False, f"harness: {type(e).__name__}: {e}")
    except Exception:  # a harness bug must still produce a result and keep the logs
        rig.check(False, f"harness crashed:\n{traceback.format_exc()}")
    finally:
        rig.close()
    return rig.result


def run_all(
    scenarios: list[Scenario],
    *,
    profile: Profile,
    seeds: list[int],
    workdir_root: Path | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Every scenario with every seed, in order; ``on_result`` sees each as it finishes."""
    results: list[RunResult] = []
    for scenario in scenarios:
        for seed in seeds:
            result = run_scenario(scenario, profile=profile, seed=seed, workdir_root=workdir_root)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
