"""Result shaping: sorting and plain projections, with MongoDB's ordering rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .errors import CommandError, bad_value, not_emulated
from .values import as_number, expand, lookup, sort_key

T = TypeVar("T")


def sort_documents(items: list[T], spec: dict[str, Any], key: Callable[[T], Any]) -> list[T]:
    """Sort by a ``{path: 1|-1}`` spec with MongoDB's cross-type order (stable)."""
    result = list(items)
    for path, direction in reversed(list(spec.items())):
        if isinstance(direction, dict):
            raise not_emulated("$meta sort")
        if as_number(direction) not in (1, -1):
            raise bad_value(f"$sort key ordering must be 1 (for ascending) or -1, got {direction}")
        descending = as_number(direction) == -1

        def field_key(item: T, path: str = path, descending: bool = descending) -> Any:
            found = [v for v in expand(lookup(key(item), path)) if not isinstance(v, list)]
            keys = [sort_key(v) for v in found] or [sort_key(None)]
            return max(keys) if descending else min(keys)

        result.sort(key=field_key, reverse=descending)
    return result


def project(doc: dict[str, Any], projection: dict[str, Any]) -> dict[str, Any]:
    """Apply a plain inclusion or exclusion projection (no projection operators)."""
    include_id = True
    fields: dict[str, bool] = {}
    for path, flag in projection.items():
        if isinstance(flag, dict) or path.startswith("$") or ".$" in path:
            raise not_emulated("projection operators")
        included = bool(flag) if not isinstance(flag, str) else True
        if path == "_id":
            include_id = included
        else:
            fields[path] = included
    if len(set(fields.values())) > 1:
        kind = "exclusion" if True in fields.values() else "inclusion"
        raise CommandError(31254, f"Cannot do {kind} on field in inclusion projection")
    if fields and list(fields.values())[0]:
        out = _include(doc, [p.split(".") for p in fields])
        if include_id and "_id" in doc:
            out = {"_id": doc["_id"], **{k: v for k, v in out.items() if k != "_id"}}
        return out
    out = _exclude(doc, [p.split(".") for p in fields])
    if not include_id:
        out.pop("_id", None)
    return out


def _include(value: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = [p[1:] for p in paths if p[0] == key]
        if not sub:
            continue
        if any(not p for p in sub):
            out[key] = item
        elif isinstance(item, dict):
            out[key] = _include(item, sub)
        elif isinstance(item, list):
            out[key] = [_include(e, sub) for e in item if isinstance(e, dict)]
    return out


def _exclude(value: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = [p[1:] for p in paths if p[0] == key]
        if any(not p for p in sub):
            continue
        if sub and isinstance(item, dict):
            out[key] = _exclude(item, sub)
        elif sub and isinstance(item, list):
            out[key] = [_exclude(e, sub) if isinstance(e, dict) else e for e in item]
        else:
            out[key] = item
    return out
