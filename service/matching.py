"""Which source config owns a blob: the matching rules of ``POST /events/blob``.

Why a module of its own: the rules are pure (configs in, one route out), so they are
tested without HTTP, Redis or MongoDB. See :func:`choose_config` and the docstring of
:mod:`service.ingesting` for the precedence.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from service.event_schemas import DeadLetterReason

_CLASS: Final = re.compile(r"\[!?\]?[^\]]*\]")


class ConfigResolver(Protocol):
    """Read access to source configs (the replica's cache, reading MongoDB on a miss)."""

    async def configs_for_container(self, container: str) -> list[dict[str, Any]]:
        """Configs whose ``ingestion.landing_container`` is ``container`` ([] if none)."""
        ...

    async def get_config_by_source_id(self, source_id: str) -> dict[str, Any] | None:
        """The config with this ``source_id``, or None when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where one event goes: accepted for ``source_id``, or dead-lettered with ``reason``."""

    source_id: str | None = None
    reason: DeadLetterReason | None = None
    candidates: tuple[str, ...] = ()


def choose_config(
    configs: Sequence[dict[str, Any]], *, container: str, path: str, key_field: str = "source_id"
) -> Route:
    """The most specific config for a blob among ``configs`` (rules in the module docstring)."""
    ranked: list[tuple[tuple[int, int], str, dict[str, Any]]] = []
    catch_all: list[tuple[str, dict[str, Any]]] = []
    for config in configs:
        ingestion = config.get("ingestion")
        if not isinstance(ingestion, dict) or ingestion.get("landing_container") != container:
            continue
        source_id = str(config.get(key_field))
        pattern = ingestion.get("path_pattern")
        if pattern is None or pattern == "":
            catch_all.append((source_id, config))
        elif isinstance(pattern, str) and fnmatch.fnmatchcase(path, pattern):
            ranked.append((_specificity(pattern), source_id, config))
    if ranked:
        best = max(rank for rank, _, _ in ranked)
        winners = [(sid, config) for rank, sid, config in ranked if rank == best]
    else:
        winners = catch_all
    if not winners:
        return Route(reason="no_matching_config")
    if len(winners) > 1:
        return Route(reason="ambiguous_match", candidates=tuple(sorted(s for s, _ in winners)))
    source_id, config = winners[0]
    return Route(source_id=source_id, reason=None if is_enabled(config) else "disabled")


def _specificity(pattern: str) -> tuple[int, int]:
    prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    literal = re.sub(r"[*?]", "", _CLASS.sub("", pattern))
    return len(prefix), len(literal)


def is_enabled(config: dict[str, Any]) -> bool:
    value = config.get("enabled")
    return value is None or bool(value)
