"""The aggregation ``$project`` stage, as it runs after ``$changeStream`` or in ``aggregate``.

Why: consumers shape change events with ``$project`` (PyMongo's own tests do), and its rules
differ from a find projection: a value is an inclusion flag (``1``/``true``), an exclusion
(``0``/``false``, only ``_id`` may be excluded in an inclusion projection), a field path
(``"$ns.db"``, always read from the root document), ``{$literal: v}``, any other string or
non-numeric value as a literal, or a nested object of the same kinds; dotted keys are the
same as nesting. Inclusion keeps ``_id`` unless it is excluded and keeps the input's field
order, computed fields follow. Expression operators other than ``$literal`` are refused as
not emulated rather than guessed.
"""

from __future__ import annotations

from typing import Any

from .errors import CommandError, not_emulated
from .values import MISSING, lookup

_INCLUDE = "include"
_EXCLUDE = "exclude"


def aggregate_project(doc: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Apply a ``$project`` specification to one document."""
    if not isinstance(spec, dict) or not spec:
        raise CommandError(51272, "$project specification must be a non-empty object")
    tree = _tree(spec)
    mode = _mode(tree)
    if mode == _EXCLUDE:
        return _exclude(doc, tree)
    if "_id" not in tree:
        tree = {"_id": (_INCLUDE, None), **tree}
    return _include(doc, doc, tree)


def _tree(spec: dict[str, Any]) -> dict[str, Any]:
    """``{field: (kind, value) | subtree}`` with dotted keys expanded into subtrees."""
    tree: dict[str, Any] = {}
    for key, value in spec.items():
        if not isinstance(key, str) or not key or key.startswith("$"):
            raise CommandError(16410, f"FieldPath field names may not start with '$': {key!r}")
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CommandError(31250, f"Path collision at {key}")
            node = child
        leaf = parts[-1]
        if leaf in node:
            raise CommandError(31250, f"Path collision at {key}")
        node[leaf] = _leaf(value)
    return tree


def _leaf(value: Any) -> Any:
    if isinstance(value, bool):
        return (_INCLUDE if value else _EXCLUDE, None)
    if isinstance(value, int | float):
        return (_INCLUDE if value else _EXCLUDE, None)
    if isinstance(value, str):
        return ("path", value[1:]) if value.startswith("$") else ("literal", value)
    if isinstance(value, dict):
        operators = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if operators:
            if len(value) == 1 and operators[0] == "$literal":
                return ("literal", value["$literal"])
            raise not_emulated(f"the expression operator {operators[0]} in $project")
        if not value:
            raise CommandError(51270, "An empty sub-projection is not a valid value.")
        return _tree(value)
    return ("literal", value)


def _mode(tree: dict[str, Any]) -> str:
    kinds: set[str] = set()

    def walk(node: dict[str, Any], top: bool) -> None:
        for key, leaf in node.items():
            if isinstance(leaf, dict):
                walk(leaf, False)
            elif not (top and key == "_id"):
                kinds.add(_EXCLUDE if leaf[0] == _EXCLUDE else _INCLUDE)

    walk(tree, True)
    if len(kinds) > 1:
        raise CommandError(31254, "Cannot do exclusion on field in inclusion projection")
    if kinds == {_EXCLUDE}:
        return _EXCLUDE
    if not kinds and tree.get("_id", (_INCLUDE,))[0] == _EXCLUDE:
        return _EXCLUDE
    return _INCLUDE


def _include(root: dict[str, Any], current: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in current.items():  # included fields keep the input's order
        leaf = tree.get(key)
        if leaf is None:
            continue
        if isinstance(leaf, dict):
            if _has_inclusions(leaf):
                shaped = _include_value(root, value, leaf)
                if shaped is not MISSING:
                    out[key] = shaped
        elif leaf[0] == _INCLUDE:
            out[key] = value
    for key, leaf in tree.items():  # then the computed fields, in specification order
        if isinstance(leaf, dict) and not _has_inclusions(leaf):
            out[key] = _computed(root, leaf)
        elif isinstance(leaf, dict) and key not in current and _has_computed(leaf):
            out[key] = _computed(root, leaf)
        elif isinstance(leaf, tuple) and leaf[0] in ("path", "literal"):
            result = _evaluate(root, leaf)
            if result is not MISSING:
                out[key] = result
    return out


def _include_value(root: dict[str, Any], value: Any, tree: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return _include(root, value, tree)
    if isinstance(value, list):
        return [_include(root, e, tree) for e in value if isinstance(e, dict)]
    return MISSING if not _has_computed(tree) else _computed(root, tree)


def _has_inclusions(tree: dict[str, Any]) -> bool:
    return any(
        _has_inclusions(leaf) if isinstance(leaf, dict) else leaf[0] == _INCLUDE
        for leaf in tree.values()
    )


def _has_computed(tree: dict[str, Any]) -> bool:
    return any(
        _has_computed(leaf) if isinstance(leaf, dict) else leaf[0] in ("path", "literal")
        for leaf in tree.values()
    )


def _computed(root: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, leaf in tree.items():
        result = _computed(root, leaf) if isinstance(leaf, dict) else _evaluate(root, leaf)
        if result is not MISSING:
            out[key] = result
    return out


def _evaluate(root: dict[str, Any], leaf: tuple[str, Any]) -> Any:
    kind, value = leaf
    if kind == "literal":
        return value
    if kind == "path":
        found = [v for v in lookup(root, value) if v is not MISSING]
        if not found:
            return MISSING
        return found[0] if len(found) == 1 else found
    return MISSING


def _exclude(current: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in current.items():
        leaf = tree.get(key)
        if leaf is None:
            out[key] = value
        elif isinstance(leaf, dict):
            if isinstance(value, dict):
                out[key] = _exclude(value, leaf)
            elif isinstance(value, list):
                out[key] = [_exclude(e, leaf) if isinstance(e, dict) else e for e in value]
            else:
                out[key] = value
        elif leaf[0] == _INCLUDE:
            out[key] = value  # only a top-level ``_id: 1`` gets here
    return out
