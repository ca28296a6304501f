"""Non-change-stream aggregation: the stages and accumulators the double runs.

Why apart from the read commands: the stages are pure functions of a document list, so they
can grow without touching cursor handling. ``$match``, ``$sort``, ``$skip``, ``$limit``,
``$project`` (aggregation rules, :mod:`.projecting`), ``$count`` and ``$group`` with
``$sum``/``$count``/``$min``/``$max``/``$first``/``$last``; a stage MongoDB does not have is
40324, one the double lacks is refused as not emulated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import CommandError, not_emulated, unknown_stage
from .projecting import aggregate_project
from .shaping import sort_documents
from .values import MISSING, as_number, canon, lookup, matches, sort_key


def run_stage(stage: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(stage, dict) or len(stage) != 1:
        raise CommandError(
            40323, "A pipeline stage specification object must contain exactly one field."
        )
    ((name, spec),) = stage.items()
    if name == "$match":
        return [doc for doc in docs if matches(doc, spec)]
    if name == "$sort":
        return sort_documents(docs, spec, key=lambda doc: doc)
    if name in {"$skip", "$limit"}:
        amount = as_number(spec)
        if amount is None or amount < 0:
            raise CommandError(15956, f"invalid argument to {name} stage")
        return docs[int(amount) :] if name == "$skip" else docs[: int(amount)]
    if name == "$project":
        return [aggregate_project(doc, spec) for doc in docs]
    if name == "$count":
        return [{spec: len(docs)}] if docs else []
    if name == "$group":
        return _group(spec, docs)
    raise unknown_stage(name)


def _expression(expr: Any) -> Callable[[dict[str, Any]], Any]:
    if isinstance(expr, str) and expr.startswith("$"):
        path = expr[1:]
        return lambda doc: _single(lookup(doc, path))
    if isinstance(expr, dict) and any(k.startswith("$") for k in expr):
        raise not_emulated("aggregation expressions other than constants and field paths")
    return lambda doc: expr


def _single(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


def _group(spec: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(spec, dict) or "_id" not in spec:
        raise CommandError(15955, "a group specification must include an _id")
    key_of = _expression(spec["_id"])
    accumulators: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = []
    for field, acc in spec.items():
        if field == "_id":
            continue
        if not isinstance(acc, dict) or len(acc) != 1:
            raise CommandError(40234, f"The field '{field}' must be an accumulator object")
        ((op, arg),) = acc.items()
        if op not in {"$sum", "$count", "$min", "$max", "$first", "$last"}:
            raise not_emulated(f"the {op} accumulator")
        accumulators.append((field, op, _expression(1 if op == "$count" else arg)))
    groups: dict[Any, dict[str, Any]] = {}
    for doc in docs:
        key = key_of(doc)
        key = None if key is MISSING else key
        group = groups.setdefault(canon(key), {"_id": key})
        for field, op, value_of in accumulators:
            _accumulate(group, field, op, value_of(doc))
    return list(groups.values())


def _accumulate(group: dict[str, Any], field: str, op: str, value: Any) -> None:
    if op in {"$sum", "$count"}:
        number = as_number(value)
        group[field] = group.get(field, 0) + (number if number is not None else 0)
    elif value is MISSING:
        group.setdefault(field, None)
    elif op == "$first":
        group.setdefault(field, value)
    elif op == "$last":
        group[field] = value
    else:
        current = group.get(field, MISSING)
        better = (
            sort_key(value) < sort_key(current)
            if op == "$min"
            else sort_key(value) > sort_key(current)
        )
        if current is MISSING or current is None or better:
            group[field] = value
