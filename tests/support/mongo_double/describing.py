"""``updateDescription`` of an update event: the difference between two document versions.

Why: consumers read ``updatedFields``/``removedFields``/``truncatedArrays`` to apply a change
without the whole document, so the double reports them the way the 7.0 oplog's delta format
does: field by field into sub-documents that exist in both versions; an array changed in
place by its changed elements (``array.3``) and, when it shrank, its new size in
``truncatedArrays``; an array none of whose elements kept its value is reported whole. A
change of type (``1`` to ``1.0``) is a change, as the server compares bytes.
"""

from __future__ import annotations

from typing import Any

import bson

from .wire import CODEC


def update_description(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The change event ``updateDescription`` for an update turning ``old`` into ``new``."""
    updated: dict[str, Any] = {}
    removed: list[str] = []
    truncated: list[dict[str, Any]] = []
    _diff(old, new, "", updated, removed, truncated)
    return {"updatedFields": updated, "removedFields": removed, "truncatedArrays": truncated}


def _diff(
    old: dict[str, Any],
    new: dict[str, Any],
    prefix: str,
    updated: dict[str, Any],
    removed: list[str],
    truncated: list[dict[str, Any]],
) -> None:
    for key in old:
        if key not in new:
            removed.append(prefix + key)
    for key, value in new.items():
        if key not in old:
            updated[prefix + key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            if _raw(value) != _raw(old[key]):
                _diff(old[key], value, f"{prefix}{key}.", updated, removed, truncated)
        elif isinstance(value, list) and isinstance(old[key], list):
            _diff_array(old[key], value, f"{prefix}{key}", updated, removed, truncated)
        elif _raw(value) != _raw(old[key]):
            updated[prefix + key] = value


def _diff_array(
    old: list[Any],
    new: list[Any],
    path: str,
    updated: dict[str, Any],
    removed: list[str],
    truncated: list[dict[str, Any]],
) -> None:
    """An array changed in place: shrunk (truncatedArrays), elements set at their index;
    reported whole when no element kept its value (as the server's delta does)."""
    if _raw(old) == _raw(new):
        return
    common = min(len(old), len(new))
    kept = [i for i in range(common) if _raw(old[i]) == _raw(new[i])]
    if common and not kept:
        updated[path] = new
        return
    if len(new) < len(old):
        truncated.append({"field": path, "newSize": len(new)})
    for i, item in enumerate(new):
        if i < len(old) and _raw(old[i]) == _raw(item):
            continue
        if i < len(old) and isinstance(item, dict) and isinstance(old[i], dict):
            _diff(old[i], item, f"{path}.{i}.", updated, removed, truncated)
        else:
            updated[f"{path}.{i}"] = item


def _raw(value: Any) -> bytes:
    """Byte-exact identity of a value: a type change (1 → 1.0) is a change, like the server."""
    return bson.encode({"v": value}, codec_options=CODEC)
