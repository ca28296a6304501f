"""docker-compose.yaml: valid Compose, and the system issue 6 asks for, wired the right way.

No Docker engine runs here, so the file is checked statically: against the Compose
specification schema (check-jsonschema's vendored copy, offline), then for the services,
healthchecks, start order and settings a working ``docker compose up`` depends on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import REPO, assert_settings_load, require, scc_variables

COMPOSE = REPO / "docker-compose.yaml"
WATCHERS = ("watcher-1", "watcher-2")
REPLICAS = {"service-1": 8081, "service-2": 8082, "service-3": 8083}
_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as Compose sees it (YAML anchors and merge keys resolved)."""
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    # Compose substitutes ${VAR:-default}; with VAR unset that is the default.
    return {k: _DEFAULTED.sub(lambda m: m.group(2), str(v)) for k, v in env.items()}


def test_compose_file_validates_against_the_compose_spec() -> None:
    """check-jsonschema's builtin Compose specification schema accepts the file."""
    require("check_jsonschema", "check-jsonschema")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_services_are_the_ones_the_issue_names(compose: dict[str, Any]) -> None:
    """mongo:7 as replica set rs0, redis:7, a seed job, two watchers, three replicas."""
    services = compose["services"]
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"mongo", "redis", "seed", *WATCHERS, *REPLICAS}
    assert services["mongo"]["image"] == "mongo:7"
    assert services["mongo"]["command"] == ["--replSet", "rs0", "--bind_ip_all"]
    assert services["redis"]["image"] == "redis:7"
    assert services["seed"]["command"] == ["python", "/app/seed/seed.py"]
    assert services["seed"]["restart"] == "no"
    for name in WATCHERS:
        assert services[name]["command"] == ["python", "-m", "watcher"]
    for name in REPLICAS:
        assert services[name]["command"] == ["python", "-m", "service"]


def test_replicas_listen_on_distinct_host_ports(compose: dict[str, Any]) -> None:
    """service-1..3 publish their HTTP port on 8081, 8082 and 8083 of the host."""
    for name, host_port in REPLICAS.items():
        service = compose["services"][name]
        container_port = _environment(service)["SCC_HTTP_PORT"]
        assert service["ports"] == [f"{host_port}:{container_port}"]


def test_project_services_share_one_locally_built_image(compose: dict[str, Any]) -> None:
    """seed, watchers and replicas all run the image built from this repository's Dockerfile."""
    for name in ("seed", *WATCHERS, *REPLICAS):
        service = compose["services"][name]
        assert service["image"] == "source-config-cache:local", name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
    assert (REPO / "Dockerfile").is_file()


def test_mongo_healthcheck_initiates_the_replica_set_once(compose: dict[str, Any]) -> None:
    """The healthcheck initiates rs0 only when rs.status() fails and waits for a primary."""
    check = compose["services"]["mongo"]["healthcheck"]
    test = check["test"]
    assert test[:4] == ["CMD", "mongosh", "--quiet", "--eval"]
    script = test[4]
    assert re.search(r"try\s*\{\s*rs\.status\(\)", script), script
    assert re.search(r"catch\s*\(e\)\s*\{\s*rs\.initiate\(", script), script
    assert "_id:'rs0'" in script and "host:'mongo:27017'" in script
    assert "isWritablePrimary" in script and "quit(1)" in script
    assert check["retries"] >= 10


def test_backing_services_and_watchers_have_healthchecks(compose: dict[str, Any]) -> None:
    """redis pings, watchers run their own --check; replicas use the image's HEALTHCHECK."""
    services = compose["services"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in WATCHERS:
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "watcher", "--check"], name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK .*/health/live", dockerfile, re.MULTILINE | re.DOTALL)
    for name in REPLICAS:
        assert "healthcheck" not in services[name], f"{name} should keep the image's check"


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    """Nothing starts before MongoDB and Redis are healthy; replicas wait for the seed."""
    services = compose["services"]
    healthy = {"condition": "service_healthy"}
    assert services["seed"]["depends_on"] == {"mongo": healthy}
    for name in (*WATCHERS, *REPLICAS):
        deps = services[name]["depends_on"]
        assert deps["mongo"] == healthy and deps["redis"] == healthy, name
    for name in REPLICAS:
        deps = services[name]["depends_on"]
        assert deps["seed"] == {"condition": "service_completed_successfully"}
        assert set(WATCHERS) <= set(deps)
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name


def test_uris_name_the_replica_set_and_the_redis_service(compose: dict[str, Any]) -> None:
    """Every project container reaches mongo as replica set rs0 and redis by service name."""
    for name in ("seed", *WATCHERS, *REPLICAS):
        env = _environment(compose["services"][name])
        uri = env["SCC_MONGODB_URI"]
        assert uri.startswith("mongodb://mongo:27017/"), uri
        assert "replicaSet=rs0" in uri or "directConnection=true" in uri, uri
        assert env["SCC_REDIS_URL"].startswith("redis://redis:6379/"), name


def test_every_variable_is_a_real_setting_and_loads(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each SCC_* variable exists in shared.settings and the values pass its validation."""
    known = scc_variables()
    instance_ids: list[str] = []
    for name in (*WATCHERS, *REPLICAS):
        env = _environment(compose["services"][name])
        unknown = sorted(set(env) - set(known))
        assert not unknown, f"{name}: not settings: {unknown}"
        loaded = assert_settings_load(env, monkeypatch)
        instance_ids.append(loaded.process.instance_id)
    assert sorted(instance_ids) == sorted([*WATCHERS, *REPLICAS])


def test_project_containers_are_hardened(compose: dict[str, Any]) -> None:
    """Watchers and replicas run read-only, without capabilities or privilege escalation."""
    for name in (*WATCHERS, *REPLICAS):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["restart"] == "unless-stopped", name


def test_seed_script_the_compose_file_runs_is_in_the_image() -> None:
    """The seed command's path is where the Dockerfile copies deploy/seed."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^COPY deploy/seed /app/seed$", dockerfile, re.MULTILINE)
    assert Path(REPO / "deploy" / "seed" / "seed.py").is_file()


SENTINEL_PROFILE = {
    "redis-primary", "redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2",
    "sentinel-3", "watcher-ha-1", "watcher-ha-2", "service-ha-1",
}  # fmt: skip


def test_the_sentinel_profile_reaches_redis_only_through_sentinel(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profile sentinel: 1 primary, 2 replicas, 3 sentinels; its processes use a Sentinel URL."""
    services = compose["services"]
    profiled = {n for n, s in services.items() if s.get("profiles") == ["sentinel"]}
    assert profiled == SENTINEL_PROFILE
    for name in ("redis-replica-1", "redis-replica-2"):
        assert "--replicaof" in services[name]["command"], name
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["command"][2]
        assert "sentinel monitor sccmaster redis-primary 6379 2" in script
        assert "--sentinel" in script
    for name in ("watcher-ha-1", "watcher-ha-2", "service-ha-1"):
        env = _environment(services[name])
        assert env["SCC_REDIS_URL"].startswith("redis+sentinel://sentinel-1:26379,"), name
        assert_settings_load(env, monkeypatch)
    subscribe = _environment(services["service-ha-1"])["SCC_REDIS_SUBSCRIBE_URL"]
    assert subscribe.startswith("redis+sentinel://") and subscribe.endswith("?role=replica")


def test_redis_keeps_an_fsynced_append_only_file_on_a_volume(compose: dict[str, Any]) -> None:
    """Redis runs with appendonly yes and appendfsync everysec, its /data on a named volume."""
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    (volume,) = redis["volumes"]
    name = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume
    assert name in {("redis-data", "/data"), "redis-data:/data"}
    assert "redis-data" in compose["volumes"]
