"""Update documents: operator and pipeline updates, replacements, upsert seeds, limits.

The double applies an update to a copy of the stored document and never mutates a stored
document in place, so cursors and change events holding the old version stay consistent.
``updateDescription`` is computed from the old and new versions by :mod:`.describing`.
Stored documents keep mongod's rules: no top-level ``$`` field, no array ``_id``, at most
100 levels of nesting.
"""

from __future__ import annotations

import copy
import datetime
import decimal
from typing import Any

from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from .errors import CommandError, bad_value, not_emulated
from .pipeline_updates import apply_pipeline
from .values import MISSING, as_number, canon, equality_fields, get_path, sort_key

_KNOWN_UNSUPPORTED = {"$rename", "$pull", "$pullAll", "$pop", "$bit"}
_SUPPORTED = {"$set", "$unset", "$inc", "$mul", "$min", "$max", "$setOnInsert", "$currentDate"}
_SUPPORTED |= {"$push", "$addToSet"}


def is_replacement(update: Any) -> bool:
    """True for a replacement document, False for an operator or pipeline update."""
    if isinstance(update, list):
        return False
    if not isinstance(update, dict):
        raise CommandError(9, "Update argument must be either an object or an array")
    operators = [k.startswith("$") for k in update]
    if operators and all(operators):
        return False
    if any(operators):
        first = next(k for k in update if k.startswith("$"))
        raise CommandError(52, f"The dollar ($) prefixed field '{first}' is not allowed here")
    return True


def apply_operators(
    doc: dict[str, Any], update: dict[str, Any] | list[Any], *, inserting: bool
) -> dict[str, Any]:
    """Return a new document: ``doc`` with the operator (or pipeline) update applied."""
    if isinstance(update, list):
        return apply_pipeline(doc, update)
    _check_conflicts(update)
    new = copy.deepcopy(doc)
    for op, fields in update.items():
        if op in _KNOWN_UNSUPPORTED:
            raise not_emulated(f"the {op} update operator")
        if op not in _SUPPORTED:
            raise CommandError(
                9,
                f"Unknown modifier: {op}. Expected a valid update modifier or pipeline-style "
                "update specified as an array",
            )
        if not isinstance(fields, dict):
            raise CommandError(9, f"Modifiers operate on fields but we found type instead: {op}")
        if op == "$setOnInsert" and not inserting:
            continue
        for path, arg in fields.items():
            _apply_one(new, op, path, arg)
    return new


def _check_conflicts(update: dict[str, Any]) -> None:
    seen: list[str] = []
    for fields in update.values():
        if not isinstance(fields, dict):
            continue
        for path in fields:
            for other in seen:
                if path == other or path.startswith(other + ".") or other.startswith(path + "."):
                    raise CommandError(
                        40, f"Updating the path '{path}' would create a conflict at '{other}'"
                    )
            seen.append(path)


def _apply_one(doc: dict[str, Any], op: str, path: str, arg: Any) -> None:  # noqa: C901 - dispatch
    if not path or any(part == "" or part.startswith("$") for part in path.split(".")):
        raise CommandError(56, f"An update path '{path}' is not valid for {op}")
    current = get_path(doc, path)
    if op in {"$set", "$setOnInsert"}:
        _set(doc, path, copy.deepcopy(arg))
    elif op == "$unset":
        _unset(doc, path)
    elif op in {"$inc", "$mul"}:
        _arith(doc, op, path, current, arg)
    elif op in {"$min", "$max"}:
        if current is MISSING or (
            (sort_key(arg) < sort_key(current))
            if op == "$min"
            else (sort_key(arg) > sort_key(current))
        ):
            _set(doc, path, copy.deepcopy(arg))
    elif op == "$currentDate":
        if arg not in (True, {"$type": "date"}):
            raise not_emulated("$currentDate with $type timestamp")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        _set(doc, path, now.replace(microsecond=now.microsecond // 1000 * 1000))
    else:  # $push / $addToSet
        items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
        if isinstance(arg, dict) and set(arg) - {"$each"}:
            raise not_emulated(f"{op} modifiers other than $each")
        if current is MISSING:
            current = []
        elif not isinstance(current, list):
            raise CommandError(2, f"The field '{path}' must be an array but is of another type")
        new_list = list(current)
        for item in items:
            if op == "$push" or all(canon(item) != canon(e) for e in new_list):
                new_list.append(copy.deepcopy(item))
        _set(doc, path, new_list)


def _arith(doc: dict[str, Any], op: str, path: str, current: Any, arg: Any) -> None:
    operand = as_number(arg)
    if operand is None:
        raise CommandError(14, f"Cannot {op[1:]} with non-numeric argument: {{{path}: {arg!r}}}")
    if current is MISSING:
        base: Any = 0
    else:
        base = as_number(current)
        if base is None:
            raise CommandError(
                14,
                f"Cannot apply {op} to a value of non-numeric type. Field '{path}' is non-numeric",
            )
    if isinstance(base, decimal.Decimal) or isinstance(operand, decimal.Decimal):
        exact = (
            decimal.Decimal(str(base)) + decimal.Decimal(str(operand))
            if op == "$inc"
            else (decimal.Decimal(str(base)) * decimal.Decimal(str(operand)))
        )
        _set(doc, path, Decimal128(exact))
        return
    result: Any = base + operand if op == "$inc" else base * operand
    if isinstance(result, int):
        wide = (
            isinstance(current, Int64) or isinstance(arg, Int64) or not -(2**31) <= result < 2**31
        )
        result = Int64(result) if wide else int(result)
    _set(doc, path, result)


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target: Any = doc
    for i, part in enumerate(parts[:-1]):
        target = _child(target, part, parts[: i + 1], create=True)
    _assign(target, parts[-1], value, path)


def _child(container: Any, part: str, so_far: list[str], *, create: bool) -> Any:
    if isinstance(container, dict):
        if part not in container:
            if not create:
                return MISSING
            container[part] = {}
        return container[part]
    if isinstance(container, list) and part.isdigit():
        index = int(part)
        if index >= len(container):
            if not create:
                return MISSING
            container.extend([None] * (index + 1 - len(container)))
            container[index] = {}
        return container[index]
    raise CommandError(
        28, f"Cannot create field '{part}' in element {{{'.'.join(so_far[:-1]) or part}: ...}}"
    )


def _assign(container: Any, part: str, value: Any, path: str) -> None:
    if isinstance(container, dict):
        container[part] = value
    elif isinstance(container, list) and part.isdigit():
        index = int(part)
        if index >= len(container):
            container.extend([None] * (index + 1 - len(container)))
        container[index] = value
    else:
        raise CommandError(28, f"Cannot create field '{part}' in element at path '{path}'")


def _unset(doc: dict[str, Any], path: str) -> None:
    parts = path.split(".")
    target: Any = doc
    for i, part in enumerate(parts[:-1]):
        target = (
            _child(target, part, parts[: i + 1], create=False) if target is not MISSING else MISSING
        )
        if target is MISSING or not isinstance(target, dict | list):
            return
    last = parts[-1]
    if isinstance(target, dict):
        target.pop(last, None)
    elif isinstance(target, list) and last.isdigit() and int(last) < len(target):
        target[int(last)] = None  # $unset of an array element leaves null, like the server


def apply_replacement(old: dict[str, Any] | None, replacement: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a replacement: ``_id`` first, kept from ``old`` when omitted."""
    new = copy.deepcopy(replacement)
    if old is not None and "_id" not in new:
        new = {"_id": old["_id"], **new}
    return id_first(new)


def id_first(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``_id`` as its first field (added as a new ObjectId when absent)."""
    if "_id" not in doc:
        return {"_id": ObjectId(), **doc}
    if next(iter(doc)) == "_id":
        return doc
    return {"_id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}


def check_id_unchanged(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse an update that changes ``_id`` (error 66 ImmutableField)."""
    if "_id" not in new or canon(new["_id"]) != canon(old["_id"]):
        raise CommandError(
            66,
            "Performing an update on the path '_id' would modify the immutable field '_id'",
        )


def upsert_document(
    query: dict[str, Any], update: dict[str, Any], replacement: bool
) -> dict[str, Any]:
    """The document an upsert inserts when ``query`` matched nothing."""
    seed: dict[str, Any] = {}
    for path, value in equality_fields(query).items():
        if replacement and path != "_id":
            continue
        if isinstance(value, dict) and any(k.startswith("$") for k in value):
            continue
        _set(seed, path, copy.deepcopy(value))
    if replacement:
        doc = {**seed, **copy.deepcopy(update)} if "_id" not in update else copy.deepcopy(update)
        return id_first(doc)
    return id_first(apply_operators(seed, update, inserting=True))


MAX_NESTING = 100  # BSONDepth::getMaxDepthForUserStorage(): the top document is level 1


def validate_document(
    doc: Any, what: str = "document", *, inserting: bool = True
) -> dict[str, Any]:
    """Refuse what mongod refuses to store: non-documents, top-level ``$``-prefixed field
    names, an array ``_id`` and nesting deeper than 100 levels (15 Overflow)."""
    if not isinstance(doc, dict):
        raise bad_value(f"{what} must be an object")
    for key in doc:
        if key.startswith("$"):
            raise CommandError(52, f"The dollar ($) prefixed field '{key}' is not allowed")
    if isinstance(doc.get("_id"), list):
        raise CommandError(2, "can't use an array for _id")
    if nesting_depth(doc) > MAX_NESTING:
        if inserting:
            message = f"cannot insert document because it exceeds {MAX_NESTING} levels of nesting"
        else:
            message = f"Document exceeds maximum nesting depth of {MAX_NESTING}"
        raise CommandError(15, message)
    return doc


def nesting_depth(doc: dict[str, Any]) -> int:
    """Levels of non-empty documents and arrays, the top document counting as one."""
    deepest = 1
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break  # deep enough to refuse; no need to walk a hostile document further
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list) and child:
                stack.append((child, depth + 1))
    return deepest
