"""Pipeline-style updates: an update given as an array of aggregation stages.

Why: ``update_one(filter, [{"$set": ...}])`` is how an application replaces an array or
computes a field from another; the server runs the stages on the matched document. The
double runs the stages a pipeline update may use — ``$set``/``$addFields``, ``$unset``,
``$project``, ``$replaceRoot``/``$replaceWith`` — with the same expression rules as its
``$project``: field paths read from the document, ``$literal``, arrays and objects evaluated
element by element, anything else literal. Expression operators it does not emulate, and
stages a pipeline update may not use, are refused with an error saying so.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import CommandError, not_emulated, unknown_stage
from .projecting import aggregate_project
from .values import MISSING, lookup

_UPDATE_STAGES = {"$set", "$addFields", "$unset", "$project", "$replaceRoot", "$replaceWith"}


def apply_pipeline(doc: dict[str, Any], pipeline: list[Any]) -> dict[str, Any]:
    """Return a new document: ``doc`` after the update pipeline's stages."""
    current = copy.deepcopy(doc)
    for stage in pipeline:
        if not isinstance(stage, dict) or len(stage) != 1:
            raise CommandError(
                40323, "A pipeline stage specification object must contain exactly one field."
            )
        ((name, spec),) = stage.items()
        if name not in _UPDATE_STAGES:
            if name.startswith("$") and unknown_stage(name).code == 40324:
                raise unknown_stage(name)
            raise CommandError(72, f"{name} is not allowed to be used within an update")
        current = _run(current, name, spec)
    return current


def _run(doc: dict[str, Any], name: str, spec: Any) -> dict[str, Any]:
    if name in ("$set", "$addFields"):
        if not isinstance(spec, dict):
            raise CommandError(40272, f"{name} specification stage must be an object")
        out = dict(doc)
        for key, value in spec.items():
            _set_path(out, key.split("."), evaluate(doc, value))
        return out
    if name == "$unset":
        fields = [spec] if isinstance(spec, str) else spec
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields or [1]):
            raise CommandError(31002, "$unset specification must be a string or an array")
        return aggregate_project(doc, {f: 0 for f in fields})
    if name == "$project":
        return aggregate_project(doc, spec)
    root = spec.get("newRoot") if name == "$replaceRoot" and isinstance(spec, dict) else spec
    new = evaluate(doc, root)
    if not isinstance(new, dict):
        raise CommandError(40228, f"'newRoot' expression must evaluate to an object, got {new!r}")
    return new


def evaluate(root: dict[str, Any], expr: Any) -> Any:
    """An aggregation expression the double understands, evaluated against ``root``."""
    if isinstance(expr, str) and expr.startswith("$"):
        if expr.startswith("$$"):
            if expr == "$$ROOT" or expr == "$$CURRENT":
                return copy.deepcopy(root)
            raise not_emulated(f"the variable {expr}")
        found = [v for v in lookup(root, expr[1:]) if v is not MISSING]
        if not found:
            return MISSING
        return copy.deepcopy(found[0] if len(found) == 1 else found)
    if isinstance(expr, list):
        return [_or_null(evaluate(root, e)) for e in expr]
    if isinstance(expr, dict):
        operators = [k for k in expr if isinstance(k, str) and k.startswith("$")]
        if operators:
            if len(expr) == 1 and operators[0] == "$literal":
                return copy.deepcopy(expr["$literal"])
            raise not_emulated(f"the expression operator {operators[0]}")
        out = {k: evaluate(root, v) for k, v in expr.items()}
        return {k: v for k, v in out.items() if v is not MISSING}
    return copy.deepcopy(expr)


def _or_null(value: Any) -> Any:
    return None if value is MISSING else value


def _set_path(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    if not rest:
        if value is MISSING:
            doc.pop(head, None)
        elif isinstance(value, dict) and isinstance(doc.get(head), dict):
            merged = dict(doc[head])  # $set merges an object into an embedded document
            for key, item in value.items():
                _set_path(merged, [key], item)
            doc[head] = merged
        else:
            doc[head] = value
        return
    child = doc.get(head)
    child = dict(child) if isinstance(child, dict) else {}
    _set_path(child, rest, value)
    doc[head] = child
