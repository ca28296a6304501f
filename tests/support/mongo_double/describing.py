"""``updateDescription`` of an update event: the difference between two document versions.

Why: consumers read ``updatedFields``/``removedFields``/``truncatedArrays`` to apply a change
without the whole document, so the double reports them the way the 7.0 oplog's delta format
does: field by field into sub-documents that exist in both versions; an array changed in
place by its changed elements (``array.3``) and, when it shrank, its new size in
``truncatedArrays``, unless that is no smaller than the new array, which is then reported
whole; ``disambiguatedPaths`` for paths with index-like or dotted field names. A
change of type (``1`` to ``1.0``) is a change, as the server compares bytes.
"""

from __future__ import annotations

from typing import Any

import bson

from .wire import CODEC


class _Delta:
    """The fields of an updateDescription being collected, plus the ambiguous paths."""

    def __init__(self) -> None:
        self.updated: dict[str, Any] = {}
        self.removed: list[str] = []
        self.truncated: list[dict[str, Any]] = []
        self.ambiguous: dict[str, list[Any]] = {}

    def path(self, parts: list[Any]) -> str:
        """The dotted path of ``parts`` (array indices as ints), noted when ambiguous: a
        field name that looks like an index or contains a dot (``disambiguatedPaths``)."""
        dotted = ".".join(str(p) for p in parts)
        if any(isinstance(p, str) and (p.isdigit() or "." in p) for p in parts):
            self.ambiguous[dotted] = list(parts)
        return dotted


def update_description(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The change event ``updateDescription`` for an update turning ``old`` into ``new``.

    ``disambiguatedPaths`` is computed too; only streams opened with ``showExpandedEvents``
    show it (see :mod:`.changestreams`).
    """
    delta = _Delta()
    _diff(old, new, [], delta)
    return {
        "updatedFields": delta.updated,
        "removedFields": delta.removed,
        "truncatedArrays": delta.truncated,
        "disambiguatedPaths": delta.ambiguous,
    }


def _diff(old: dict[str, Any], new: dict[str, Any], parts: list[Any], delta: _Delta) -> None:
    for key in old:
        if key not in new:
            delta.removed.append(delta.path([*parts, key]))
    for key, value in new.items():
        here = [*parts, key]
        if key not in old:
            delta.updated[delta.path(here)] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            if _raw(value) != _raw(old[key]):
                _diff(old[key], value, here, delta)
        elif isinstance(value, list) and isinstance(old[key], list):
            _diff_array(old[key], value, here, delta)
        elif _raw(value) != _raw(old[key]):
            delta.updated[delta.path(here)] = value


def _diff_array(old: list[Any], new: list[Any], parts: list[Any], delta: _Delta) -> None:
    """An array changed in place: shrunk (truncatedArrays), elements set at their index or
    diffed into; reported whole when that description would be no smaller than the array,
    as the server's delta does."""
    if _raw(old) == _raw(new):
        return
    local = _Delta()
    if len(new) < len(old):
        local.truncated.append({"field": local.path(parts), "newSize": len(new)})
    for i, item in enumerate(new):
        if i < len(old) and _raw(old[i]) == _raw(item):
            continue
        if i < len(old) and isinstance(item, dict) and isinstance(old[i], dict):
            _diff(old[i], item, [*parts, i], local)
        else:
            local.updated[local.path([*parts, i])] = item
    size = sum(len(path) + len(_raw(value)) for path, value in local.updated.items())
    size += sum(len(path) for path in local.removed) + 16 * len(local.truncated)
    if size >= len(_raw(new)):
        delta.updated[delta.path(parts)] = new
        return
    delta.updated.update(local.updated)
    delta.removed.extend(local.removed)
    delta.truncated.extend(local.truncated)
    delta.ambiguous.update(local.ambiguous)


def _raw(value: Any) -> bytes:
    """Byte-exact identity of a value: a type change (1 → 1.0) is a change, like the server."""
    return bson.encode({"v": value}, codec_options=CODEC)
