"""Asking one replica what it knows: ``/health/cache``, ``/metrics``, ``/configs/{id}``.

Why it exists: every scenario reads the same few numbers from replicas (resync count,
rejected messages, lookups that went to MongoDB, events by outcome), and the Prometheus
text format is parsed in exactly one place. Functions take an ``httpx.Client`` so a
caller reuses one keep-alive connection for hundreds of lookups.
"""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

from tests.chaos.profile import INGEST_TOKEN

_SAMPLE: Final = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

#: Series key: metric name and its sorted label pairs.
Series = tuple[str, tuple[tuple[str, str], ...]]


def parse_metrics(text: str) -> dict[Series, float]:
    """Prometheus text exposition → ``{(name, labels): value}`` (comments skipped)."""
    out: dict[Series, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
        try:
            out[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return out


class Metrics:
    """One scrape of a replica's ``/metrics``, with sums by name and by label."""

    def __init__(self, series: dict[Series, float]) -> None:
        self.series = series

    def total(self, name: str) -> float:
        """Sum of every series of ``name``."""
        return sum(v for (n, _), v in self.series.items() if n == name)

    def by(self, name: str, label: str) -> dict[str, float]:
        """``{label value: value}`` for the series of ``name``."""
        out: dict[str, float] = {}
        for (n, labels), value in self.series.items():
            if n == name:
                for key, text in labels:
                    if key == label:
                        out[text] = out.get(text, 0.0) + value
        return out


def scrape(client: httpx.Client, base_url: str) -> Metrics:
    """``GET /metrics`` (raises ``httpx.HTTPError`` when the replica does not answer)."""
    response = client.get(base_url + "/metrics")
    response.raise_for_status()
    return Metrics(parse_metrics(response.text))


def delta(after: Metrics, before: Metrics, name: str, label: str | None = None) -> Any:
    """``after − before`` for ``name`` (a float, or a dict by ``label``)."""
    if label is None:
        return after.total(name) - before.total(name)
    a, b = after.by(name, label), before.by(name, label)
    return {k: a.get(k, 0.0) - b.get(k, 0.0) for k in sorted(set(a) | set(b))}


def cache_health(client: httpx.Client, base_url: str) -> dict[str, Any] | None:
    """``GET /health/cache`` as a dict, or None if the replica did not answer 200."""
    try:
        response = client.get(base_url + "/health/cache")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body = response.json()
    return body if isinstance(body, dict) else None


def auth_headers() -> dict[str, str]:
    """Headers every well-behaved event sender of the chaos fleet sends."""
    return {"X-Ingest-Token": INGEST_TOKEN}
