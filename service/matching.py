"""Which source config owns a blob: the matching rules of ``POST /events/blob``.

Why a module of its own: the rules are pure (configs in, one route out), so they are
tested without HTTP, Redis or MongoDB. See :func:`choose_config` and the docstring of
:mod:`service.ingesting` for the precedence.

Invariants: a config's id comes from :func:`shared.documents.key_of` (the one function
that derives it, dotted ``SCC_KEY_FIELD`` paths included) and never from a plain
``config.get``; a config whose ``enabled`` is neither a boolean nor missing/null, or
whose key cannot be derived, is a config error (``invalid_config``), never silently
enabled; an explicitly named config (:func:`check_explicit`) still has to own the blob's
container and path unless it opts out with ``ingestion.explicit_route_any_location: true``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from service.event_schemas import DeadLetterReason
from shared.documents import key_of

_CLASS: Final = re.compile(r"\[!?\]?[^\]]*\]")
#: The config field (under ``ingestion``) that lets an explicit route name any location.
ANY_LOCATION: Final = "explicit_route_any_location"


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
    ranked: list[tuple[tuple[int, int], str | None, dict[str, Any]]] = []
    catch_all: list[tuple[str | None, dict[str, Any]]] = []
    for config in configs:
        ingestion = config.get("ingestion")
        if not isinstance(ingestion, dict) or ingestion.get("landing_container") != container:
            continue
        source_id = key_of(config, key_field)
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
        names = tuple(sorted(s if s is not None else "?" for s, _ in winners))
        return Route(reason="ambiguous_match", candidates=names)
    source_id, config = winners[0]
    if source_id is None:
        return Route(reason="invalid_config")
    return Route(source_id=source_id, reason=enabled_reason(config))


def check_explicit(config: dict[str, Any], *, source_id: str, container: str, path: str) -> Route:
    """The route of an event that names ``source_id``: that config, if it owns the blob.

    The named config must be enabled and its ``ingestion.landing_container`` /
    ``path_pattern`` must match the blob as they would without a name, unless it sets
    ``ingestion.explicit_route_any_location: true``; otherwise ``route_mismatch``.
    """
    ingestion = config.get("ingestion")
    ingestion = ingestion if isinstance(ingestion, dict) else {}
    any_location = ingestion.get(ANY_LOCATION)
    if any_location is not None and not isinstance(any_location, bool):
        return Route(source_id=source_id, reason="invalid_config")
    if not any_location and not _owns(ingestion, container, path):
        return Route(source_id=source_id, reason="route_mismatch")
    return Route(source_id=source_id, reason=enabled_reason(config))


def _owns(ingestion: dict[str, Any], container: str, path: str) -> bool:
    if ingestion.get("landing_container") != container:
        return False
    pattern = ingestion.get("path_pattern")
    if pattern is None or pattern == "":
        return True
    return isinstance(pattern, str) and fnmatch.fnmatchcase(path, pattern)


@functools.lru_cache(maxsize=4096)  # patterns are few and each event asks again
def _specificity(pattern: str) -> tuple[int, int]:
    prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    literal = re.sub(r"[*?]", "", _CLASS.sub("", pattern))
    return len(prefix), len(literal)


def enabled_reason(config: dict[str, Any]) -> DeadLetterReason | None:
    """None when the config is enabled, ``disabled`` or ``invalid_config`` otherwise.

    ``enabled`` missing or null means enabled; any value but a boolean (``"false"``,
    ``0``, ``"no"``) is a config error rather than a guess.
    """
    value = config.get("enabled")
    if value is None or value is True:
        return None
    if value is False:
        return "disabled"
    return "invalid_config"


def is_enabled(config: dict[str, Any]) -> bool:
    """True only for a config that is enabled without doubt (see :func:`enabled_reason`)."""
    return enabled_reason(config) is None
