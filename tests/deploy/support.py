"""Helpers shared by the deployment tests: repo paths, optional validators, metric names.

The deployment artefacts (Dockerfile, compose file, Helm chart, dashboard) are not Python,
so nothing imports them; these tests are what keeps them honest. Validators that are dev
dependencies are imported through :func:`require`, which skips with the reason on a
developer machine that lacks them and fails in CI (``CI`` set), where a skip would hide
a broken setup.
"""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

from shared import settings as scc_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "source-config-cache"

#: Every metric the system exports that dashboards and alerts may use.
KNOWN_METRICS = frozenset(
    {
        "source_config_cache_hits_total",
        "source_config_cache_misses_total",
        "source_config_cache_invalidations_total",
        "source_config_cache_age_seconds",
        "source_config_cache_size",
        "scc_replica_lag_seconds",
        "scc_replica_resyncs_total",
        "scc_messages_rejected_total",
        "scc_watcher_is_leader",
        "scc_watcher_lag_seconds",
        "scc_watcher_resyncs_total",
        "scc_watcher_events_total",
        "scc_watcher_publish_seconds_bucket",
        "scc_events_trimmed_total",
        "scc_events_trimmed_unread_total",
        "scc_events_stream_length",
    }
)


def declared_dev_dependencies() -> set[str]:
    """Distribution names in pyproject's ``[dependency-groups] dev`` (lower case)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    group = pyproject.get("dependency-groups", {}).get("dev", [])
    return {re.split(r"[<>=!~;\[ ]", str(spec), maxsplit=1)[0].lower() for spec in group}


def require(module: str, distribution: str) -> ModuleType:
    """Import ``module`` from the dev dependency ``distribution``, or skip with the reason.

    Once ``distribution`` is declared in pyproject's dev group, ``scripts/setup.sh``
    installs it, so in CI (``CI`` set) its absence is a broken setup and fails the test.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        declared = distribution.lower() in declared_dev_dependencies()
        where = "declared in" if declared else "not yet declared in"
        message = f"{distribution} is not installed ({e}); it is {where} pyproject's dev group"
        if declared and os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def scc_variables() -> dict[str, bool]:
    """Every ``SCC_*`` variable ``shared.settings`` reads → whether it holds a secret."""
    groups = [
        obj
        for obj in vars(scc_settings).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseSettings)
        and obj.__module__ == scc_settings.__name__
    ]
    variables: dict[str, bool] = {}
    for group in groups:
        for field in group.model_fields.values():
            alias = field.validation_alias
            assert isinstance(alias, AliasChoices), f"{group.__name__}: alias missing"
            name = str(alias.choices[0])
            variables[name] = "SecretStr" in str(field.annotation)
    return variables


def assert_settings_load(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Load every settings group from exactly ``env`` (others cleared); returns Settings."""
    for name in list(os.environ):
        if name.startswith("SCC_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = scc_settings.load_settings()
    assert isinstance(loaded.mongo.uri, SecretStr)
    return loaded


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(?!\w)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"})


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
