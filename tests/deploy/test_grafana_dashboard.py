"""The Grafana dashboard: well-formed, and built only on metrics the system really exports.

A dashboard that queries a misspelt metric shows an empty panel, which at 3 a.m. reads
as "all quiet". Every PromQL expression in it is therefore parsed for metric names and
checked against the exported list, and every exported metric must appear somewhere.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.support import CHART, KNOWN_METRICS, promql_metric_names

DASHBOARD = CHART / "dashboards" / "source-config-cache.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]


def test_metric_name_extraction_ignores_functions_labels_and_ranges() -> None:
    """The PromQL scan finds metric names only, so the checks below mean something."""
    expr = (
        'sum by (pod, le) (rate(foo_bucket{namespace=~"$namespace", le!="+Inf"}'
        "[$__rate_interval])) / clamp_min(bar_total offset 5m, 1e-9) or vector(0)"
    )
    assert promql_metric_names(expr) == {"foo_bucket", "bar_total"}


def test_dashboard_identity_and_variables(dashboard: dict[str, Any]) -> None:
    """Stable uid and title, a Prometheus data-source variable and a namespace filter."""
    assert dashboard["uid"] == "source-config-cache"
    assert dashboard["title"] == "source-config-cache"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    query = variables["namespace"]["definition"]
    (metric,) = re.findall(r"label_values\((\w+),\s*namespace\)", query)
    assert metric in KNOWN_METRICS


def test_panels_have_unique_ids_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    """Panel ids are unique and every panel lies inside Grafana's 24-column grid."""
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    """No two panels claim the same grid cell."""
    taken: dict[tuple[int, int], str] = {}
    for panel in _panels(dashboard):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    """Queries follow the selected data source and namespace instead of a hard-coded one."""
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert '{namespace=~"$namespace"}' in target["expr"], target["expr"]


def test_queries_use_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    """Every metric a panel queries is one the watcher or a replica exports."""
    for expr in _expressions(dashboard):
        names = promql_metric_names(expr)
        assert names, f"no metric in {expr}"
        assert names <= KNOWN_METRICS, f"unknown metric(s) {names - KNOWN_METRICS} in {expr}"


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    """Each exported metric (leader, lags, resyncs, rejects, hits/misses...) has a panel."""
    used = set().union(*(promql_metric_names(e) for e in _expressions(dashboard)))
    assert used == KNOWN_METRICS, sorted(KNOWN_METRICS - used)
