"""Logging and metrics set-up shared by every process.

Logs: structlog, one JSON object per line in production (``SCC_LOG_FORMAT=json``) or a
readable console line in a terminal; context such as ``seq``, ``epoch``, ``key`` and
``request_id`` is bound with contextvars. Standard-library loggers (uvicorn, redis,
pymongo) go through the same renderer so a log shipper sees one format.

Metrics: an OpenTelemetry ``MeterProvider`` whose Prometheus reader writes into a
registry owned by the caller (not the process-global one), so two apps in one test
process never collide; :func:`render_metrics` produces the ``/metrics`` body. Hot paths
count in plain integers and export through observable instruments.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Telemetry",
    "configure_logging",
    "gauge_callback",
    "make_telemetry",
    "render_metrics",
]


def configure_logging(*, fmt: str = "json", level: str = "info") -> None:
    """Route structlog and the standard library through one renderer (json or console)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            # Drop below-level events before any work is done on them: debug calls on
            # hot paths then cost one level check, not a timestamp and a render.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("pymongo", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A meter provider whose metrics render from ``registry``."""

    provider: MeterProvider
    registry: CollectorRegistry

    def meter(self, name: str) -> Meter:
        """A meter of this provider (one per package is plenty)."""
        return self.provider.get_meter(name)

    def shutdown(self) -> None:
        """Stop the provider; its reader leaves the registry."""
        self.provider.shutdown()


def make_telemetry(*, service_name: str, instance_id: str) -> Telemetry:
    """A fresh provider + Prometheus reader writing into a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False, registry=registry
    )
    resource = Resource.create({"service.name": service_name, "service.instance.id": instance_id})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    return Telemetry(provider=provider, registry=registry)


def render_metrics(telemetry: Telemetry) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``telemetry`` and its content type."""
    return generate_latest(telemetry.registry), CONTENT_TYPE_LATEST


def gauge_callback(
    read: Callable[[], Iterable[tuple[float, dict[str, str]]]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """Adapt ``read() -> [(value, attributes)]`` to an observable-instrument callback."""

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in read()]

    return callback
