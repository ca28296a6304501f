"""Dockerfile and .dockerignore: one slim non-root image whose healthcheck works for both roles.

There is no Docker engine here, so the Dockerfile is parsed as text (continuation lines
joined, instructions split per stage), and the pieces that are plain Python — the
HEALTHCHECK command and the requirements extraction — are run for real.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.support import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    """One ``FROM`` stage: its base, its name, and its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """Arguments of every instruction ``keyword`` in this stage."""
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (comments and continuations handled)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, got {keyword}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    """The Dockerfile's stages."""
    _, parsed = parse_dockerfile(DOCKERFILE.read_text())
    return parsed


def _healthcheck_argv(stage: Stage) -> list[str]:
    (check,) = stage.all("HEALTHCHECK")
    _, _, exec_form = check.partition("CMD ")
    argv = json.loads(exec_form)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def test_every_stage_builds_on_python_311_slim(stages: list[Stage]) -> None:
    """Build and runtime stages use the python:3.11-slim base (overridable to pin a digest)."""
    assert [s.name for s in stages] == ["build", "runtime"]
    for stage in stages:
        assert stage.base == "python:3.11-slim", stage.base


def test_runtime_stage_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    """The final USER is a numeric uid other than 0, so runAsNonRoot can verify it."""
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert int(uid) == 10001
    run_lines = " ".join(stages[-1].all("RUN"))
    assert "--uid 10001" in run_lines, "the uid should exist in /etc/passwd"


def test_runtime_stage_keeps_build_tools_out(stages: list[Stage]) -> None:
    """The runtime stage copies only the virtualenv and the seed files, never the sources."""
    copies = stages[-1].all("COPY")
    assert copies == ["--from=build /opt/venv /opt/venv", "deploy/seed /app/seed"]


def test_default_command_is_the_service(stages: list[Stage]) -> None:
    """Without a command the image runs a service replica; no ENTRYPOINT gets in the way."""
    runtime = stages[-1]
    assert json.loads(runtime.all("CMD")[-1]) == ["python", "-m", "service"]
    assert not runtime.all("ENTRYPOINT")
    assert "8080" in runtime.all("EXPOSE")


def test_healthcheck_targets_health_live_on_the_configured_port(stages: list[Stage]) -> None:
    """The HEALTHCHECK is exec form and asks /health/live on $SCC_HTTP_PORT (default 8080)."""
    (check,) = stages[-1].all("HEALTHCHECK")
    options = dict(o.lstrip("-").split("=", 1) for o in shlex.split(check.split("CMD ")[0]))
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    argv = _healthcheck_argv(stages[-1])
    assert argv[:2] == ["python", "-c"]
    assert "/health/live" in argv[2] and "SCC_HTTP_PORT" in argv[2]
    envs = " ".join(stages[-1].all("ENV"))
    assert "SCC_HTTP_PORT=8080" in envs


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health/live" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    """A throwaway HTTP server on 127.0.0.1 answering /health/live with ``_Health.status``."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, name="health-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        _Health.status = 200


def _run_healthcheck(argv: list[str], port: int) -> int:
    command = [sys.executable, *argv[1:]]
    env = {"SCC_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_exit_status_follows_the_endpoint(
    stages: list[Stage], health_server: http.server.HTTPServer
) -> None:
    """The HEALTHCHECK command exits 0 on a 200, 1 on a 503 and 1 when nothing listens."""
    argv = _healthcheck_argv(stages[-1])
    port = health_server.server_address[1]
    assert _run_healthcheck(argv, port) == 0
    _Health.status = 503
    assert _run_healthcheck(argv, port) == 1
    health_server.shutdown()
    health_server.server_close()
    assert _run_healthcheck(argv, port) == 1


def test_dependencies_come_from_pyproject_pins(stages: list[Stage], tmp_path: Path) -> None:
    """The build stage's requirements are exactly pyproject's dependencies, all pinned."""
    build = stages[0]
    (extract,) = [r for r in build.all("RUN") if "tomllib" in r]
    code = re.search(r'python -c "(.*?)"', extract)
    assert code, extract
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    script = code.group(1).replace("/tmp/requirements.txt", str(tmp_path / "req.txt"))
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=30)
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert (tmp_path / "req.txt").read_text().split() == wanted
    assert all("==" in requirement for requirement in wanted)
    assert "-r /tmp/requirements.txt" in extract
    assert any("pip check" in r for r in build.all("RUN"))


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").rstrip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """The matcher used below treats negation, ``**`` and parent directories like Docker."""
    patterns = ["*", "!src/", "**/__pycache__"]
    assert dockerignore_excludes(".venv/bin/python", patterns)
    assert not dockerignore_excludes("src/a.py", patterns)
    assert dockerignore_excludes("src/__pycache__/a.pyc", patterns)


def test_everything_the_dockerfile_copies_reaches_the_build(stages: list[Stage]) -> None:
    """Each COPY source exists and none of its files is excluded by .dockerignore."""
    patterns = _dockerignore()
    sources: list[str] = []
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            sources.extend(args.split()[:-1])
    assert sources, "no COPY from the build context"
    for source in sources:
        root = REPO / source
        assert root.exists(), f"COPY {source}: missing in the repository"
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in relative:
                continue
            assert not dockerignore_excludes(relative, patterns), f"{relative} is ignored"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    """Virtualenvs, git history, tests, caches and .env files never enter the build context."""
    patterns = _dockerignore()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "tests/conftest.py",
        "bench/results/x.json",
        "helm/source-config-cache/values.yaml",
        "shared/__pycache__/keys.cpython-311.pyc",
        "deploy/redis-acl.conf",
    ):
        assert dockerignore_excludes(path, patterns), path
