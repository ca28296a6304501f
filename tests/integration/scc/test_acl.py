"""scc needs no Redis permission beyond the deployment's ACL user (deploy/redis-acl.conf)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.keys import Keys
from tests.integration.scc.conftest import Deployment
from tests.integration.scc.test_inspect import healthy

pytestmark = pytest.mark.integration
ACL_FILE = Path(__file__).resolve().parents[3] / "deploy" / "redis-acl.conf"
USER, PASSWORD = "scc-cli-test", "cli-test-password-0123456789"


@pytest.fixture
def acl_user(deployment: Deployment) -> Iterator[str]:
    """The deployment's ACL rules under a test user; yields a URL logging in as it."""
    lines = [line for line in ACL_FILE.read_text().splitlines() if line.startswith("user ")]
    if not lines:
        pytest.skip(f"no `user` line in {ACL_FILE}")
    rules = [r for r in shlex.split(lines[0])[2:] if not r.startswith(">")]
    deployment.client.acl_setuser(USER, reset=True)
    deployment.client.execute_command("ACL", "SETUSER", USER, *rules, f">{PASSWORD}")
    try:
        yield deployment.url.replace("redis://", f"redis://{USER}:{PASSWORD}@")
    finally:
        deployment.client.acl_deluser(USER)


def test_every_command_works_as_the_deployments_acl_user(
    deployment: Deployment, acl_user: str
) -> None:
    """inspect, replicas, resync, token show/reset and dlq all run as the ACL user."""
    deployment.keys = Keys("scc")  # the namespace the shipped ACL grants
    healthy(deployment)
    deployment.client.xadd(deployment.keys.events_dlq, {"reason": "no_matching_config"})
    for argv in (["inspect"], ["inspect", "--json"], ["replicas"], ["resync"],
                 ["token", "show"], ["dlq"], ["token", "reset", "--yes"]):  # fmt: skip
        run = deployment.scc(*argv, url=acl_user)
        assert run.status == 0, (argv, run.out, run.err)
        assert PASSWORD not in run.out + run.err


def test_a_namespace_outside_the_acl_is_refused_in_one_line(
    deployment: Deployment, acl_user: str
) -> None:
    """Reading keys the ACL does not grant is a one-line refusal (exit 2), not a crash."""
    deployment.keys = Keys("other")
    healthy(deployment)
    run = deployment.scc("inspect", url=acl_user)
    assert run.status == 2 and run.err.count("\n") == 1, run.err
    assert "refused a command (NoPermissionError: " in run.err, run.err
