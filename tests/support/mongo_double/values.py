"""Query semantics on decoded BSON: equality, ordering, dotted paths and filters.

MongoDB compares values by BSON type bracket, not by Python type: ``1``, ``Int64(1)`` and
``1.0`` are equal, ``True`` is not ``1``, documents compare field by field in order, and
``{field: null}`` also matches a missing field. This module keeps those rules so the double
never answers a query differently from a real server for the operators it accepts; an
operator it does not implement is refused with BadValue instead of being guessed.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Hashable, Iterator
from typing import Any, TypeVar

import bson
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

from .errors import bad_value, not_emulated


class _Missing:
    """Marks a path that does not exist in a document (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

Number = int | float | decimal.Decimal
T = TypeVar("T")


def as_number(value: Any) -> Number | None:
    """The numeric value of a BSON number, ``None`` for anything else (bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return None


def canon(value: Any) -> Hashable:
    """A hashable key equal for exactly the values MongoDB considers equal."""
    number = as_number(value)
    if number is not None:
        return _canon_number(number)
    if value is None or value is MISSING:
        return ("null",)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, dict):
        return ("o", tuple((k, canon(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("a", tuple(canon(v) for v in value))
    if isinstance(value, ObjectId):
        return ("oid", value.binary)
    if isinstance(value, datetime.datetime | DatetimeMS):
        return ("d", _millis(value))
    if isinstance(value, Binary):
        return ("bin", value.subtype, bytes(value))
    if isinstance(value, bytes):
        return ("bin", 0, value)
    return ("x", type(value).__name__, bson.encode({"v": value}))


def _canon_number(number: Number) -> Hashable:
    if number != number:  # NaN equals NaN in MongoDB
        return ("nan",)
    if isinstance(number, float) and number.is_integer():
        return ("n", int(number))
    return ("n", number)


def _millis(value: datetime.datetime | DatetimeMS) -> int:
    if isinstance(value, DatetimeMS):
        return int(value)
    return int(DatetimeMS(value))


def values_equal(a: Any, b: Any) -> bool:
    """MongoDB equality between two BSON values (missing equals null)."""
    return canon(a) == canon(b)


_RANKS: dict[type, int] = {
    str: 4,
    dict: 5,
    list: 6,
    Binary: 7,
    bytes: 7,
    ObjectId: 8,
    bool: 9,
    datetime.datetime: 10,
    DatetimeMS: 10,
    Timestamp: 11,
    Regex: 12,
}


def type_rank(value: Any) -> int:
    """The BSON comparison-order bracket of ``value`` (MinKey lowest, MaxKey highest)."""
    if isinstance(value, MinKey):
        return 0
    if value is None or value is MISSING:
        return 1
    if as_number(value) is not None:
        return 3
    if isinstance(value, MaxKey):
        return 100
    return _RANKS.get(type(value), 50)


def sort_key(value: Any) -> tuple[Any, ...]:
    """A Python-orderable key that follows MongoDB's cross-type comparison order."""
    rank = type_rank(value)
    if rank == 3:
        number = as_number(value)
        if number is None or number != number:  # NaN sorts below every other number
            return (rank, 0)
        return (rank, 1, decimal.Decimal(number) if isinstance(number, float) else number)
    if rank in (0, 1, 100):
        return (rank,)
    if isinstance(value, dict):
        return (rank, tuple((sort_key(v)[0], k, sort_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return (rank, tuple(sort_key(v) for v in value))
    if isinstance(value, ObjectId):
        return (rank, value.binary)
    if isinstance(value, datetime.datetime | DatetimeMS):
        return (rank, _millis(value))
    if isinstance(value, Binary):
        return (rank, len(value), value.subtype, bytes(value))
    if isinstance(value, bytes):
        return (rank, len(value), 0, value)
    if isinstance(value, Timestamp):
        return (rank, value.time, value.inc)
    if isinstance(value, str | bool):
        return (rank, value)
    return (rank, str(value))


def lookup(doc: Any, path: str) -> list[Any]:
    """Every value reachable at dotted ``path``, traversing arrays; ``[MISSING]`` if none."""
    found = list(_walk(doc, path.split(".")))
    return found or [MISSING]


def _walk(value: Any, parts: list[str]) -> Iterator[Any]:
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        if head in value:
            yield from _walk(value[head], rest)
        else:
            yield MISSING
    elif isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            yield from _walk(value[int(head)], rest)
        for element in value:
            if isinstance(element, dict):
                yield from _walk(element, parts)
    else:
        yield MISSING


def get_path(doc: dict[str, Any], path: str) -> Any:
    """The single value at dotted ``path`` without array traversal (MISSING if absent)."""
    value: Any = doc
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether ``doc`` satisfies the query document ``query``."""
    if not isinstance(query, dict):
        raise bad_value("the query filter must be an object")
    for key, condition in query.items():
        if key.startswith("$"):
            if not _logical(doc, key, condition):
                return False
        elif not _field_matches(lookup(doc, key), condition):
            return False
    return True


_FIELD_OPERATORS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$not"}
_REFUSED_OPERATORS = {"$regex", "$options", "$elemMatch", "$size", "$type", "$mod", "$all"}


def check_query(query: Any) -> None:
    """Refuse a malformed or unsupported filter up front, even if no document is scanned."""
    if not isinstance(query, dict):
        raise bad_value("the query filter must be an object")
    for key, condition in query.items():
        if key in {"$and", "$or", "$nor"}:
            if not isinstance(condition, list) or not condition:
                raise bad_value(f"{key} argument must be a non-empty array")
            for clause in condition:
                check_query(clause)
        elif key.startswith("$"):
            _logical({}, key, [{}])
        elif _is_operator_doc(condition):
            _check_condition(condition)


def _check_condition(condition: dict[str, Any]) -> None:
    for op, arg in condition.items():
        if op in _REFUSED_OPERATORS:
            raise not_emulated(f"the {op} query operator")
        if op not in _FIELD_OPERATORS:
            raise bad_value(f"unknown operator: {op}")
        if op in {"$in", "$nin"} and not isinstance(arg, list):
            raise bad_value(f"{op} needs an array")
        if op == "$not":
            if not isinstance(arg, dict) or not _is_operator_doc(arg):
                raise bad_value("$not needs a document of operators")
            _check_condition(arg)


def _logical(doc: dict[str, Any], op: str, clauses: Any) -> bool:
    if op in {"$and", "$or", "$nor"}:
        if not isinstance(clauses, list) or not clauses:
            raise bad_value(f"{op} argument must be a non-empty array")
        results = (matches(doc, clause) for clause in clauses)
        if op == "$and":
            return all(results)
        if op == "$or":
            return any(results)
        return not any(results)
    if op == "$comment":
        return True
    if op in {"$expr", "$where", "$text", "$jsonSchema"}:
        raise not_emulated(f"the {op} query operator")
    raise bad_value(f"unknown top level operator: {op}")


def _is_operator_doc(condition: Any) -> bool:
    return isinstance(condition, dict) and bool(condition) and next(iter(condition)).startswith("$")


def _field_matches(candidates: list[Any], condition: Any) -> bool:
    if not _is_operator_doc(condition):
        return _eq(candidates, condition)
    return all(_operator(candidates, op, arg) for op, arg in condition.items())


def expand(candidates: list[Any]) -> Iterator[Any]:
    """Each candidate, then the elements of array candidates (MongoDB's implicit $elemMatch)."""
    for value in candidates:
        yield value
        if isinstance(value, list):
            yield from value


def _eq(candidates: list[Any], target: Any) -> bool:
    if isinstance(target, Regex):
        raise not_emulated("regular-expression matching")
    key = canon(target)
    return any(canon(v) == key for v in expand(candidates))


def _compare(candidates: list[Any], op: str, target: Any) -> bool:
    if target is None:
        return op in {"$gte", "$lte"} and _eq(candidates, None)
    rank, key = type_rank(target), sort_key(target)
    for value in expand(candidates):
        if value is MISSING or type_rank(value) != rank:
            continue
        other = sort_key(value)
        if (
            (op == "$gt" and other > key)
            or (op == "$gte" and other >= key)
            or (op == "$lt" and other < key)
            or (op == "$lte" and other <= key)
        ):
            return True
    return False


def _operator(candidates: list[Any], op: str, arg: Any) -> bool:
    if op == "$eq":
        return _eq(candidates, arg)
    if op == "$ne":
        return not _eq(candidates, arg)
    if op in {"$in", "$nin"}:
        if not isinstance(arg, list):
            raise bad_value(f"{op} needs an array")
        hit = any(_eq(candidates, item) for item in arg)
        return hit if op == "$in" else not hit
    if op in {"$gt", "$gte", "$lt", "$lte"}:
        return _compare(candidates, op, arg)
    if op == "$exists":
        present = any(v is not MISSING for v in candidates)
        return present == bool(arg)
    if op == "$not":
        if not isinstance(arg, dict):
            raise bad_value("$not needs an object")
        return not _field_matches(candidates, arg)
    if op in _REFUSED_OPERATORS:
        raise not_emulated(f"the {op} query operator")
    raise bad_value(f"unknown operator: {op}")


def equality_fields(query: dict[str, Any]) -> dict[str, Any]:
    """The ``path: value`` equalities of ``query`` an upsert copies into the new document."""
    out: dict[str, Any] = {}
    for key, condition in query.items():
        if key == "$and" and isinstance(condition, list):
            for clause in condition:
                if isinstance(clause, dict):
                    out.update(equality_fields(clause))
        elif key.startswith("$"):
            continue
        elif not _is_operator_doc(condition):
            out[key] = condition
        elif isinstance(condition, dict) and "$eq" in condition:
            out[key] = condition["$eq"]
    return out
