"""How a source-config document is identified, the same way in the watcher and the replicas.

A config has two identities: its *key* (``SCC_KEY_FIELD``, default ``source_id``; a
non-empty string, dotted paths allowed) that lookups use, and its MongoDB ``_id`` that
change events name. Both processes must derive them identically, or a delete named by one
would miss the entry held by the other.

Invariant: two ``_id`` values get equal :func:`id_token`\\ s exactly when MongoDB
considers them the same ``_id`` ("Comparison/Sort Order" in the MongoDB manual): numbers
compare by value across int32, int64, double and Decimal128 (``1``, ``Int64(1)``, ``1.0``
and ``Decimal128("1")`` are one ``_id``; every NaN is one value; ``-0`` is ``0``), a
boolean is never a number, strings compare by their code points, binary data by subtype
and bytes, dates by their milliseconds (a ``datetime`` and a ``DatetimeMS`` alike), and
embedded documents field by field in order, arrays element by element. A reload decodes
an int64 ``_id`` as ``Int64`` and a message as ``int``: both must name one document.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Hashable, Mapping
from typing import Any

import bson
from bson import Code, Decimal128, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.max_key import MaxKey
from bson.min_key import MinKey


def key_of(doc: Mapping[str, Any], key_field: str) -> str | None:
    """The document's key (``key_field``, dotted paths allowed) if it is a non-empty string."""
    if "." not in key_field:
        value = doc.get(key_field)
        return value if isinstance(value, str) and value else None
    value = doc
    for part in key_field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) and value else None


_NAN: Hashable = ("nan",)


def id_token(value: Any) -> Hashable:
    """A hashable stand-in for an ``_id`` value, equal exactly when MongoDB's ``_id``\\ s are.

    The common cases cost one class check: a ``str`` and an ``int`` stand for themselves,
    an ObjectId for its 12 bytes (no other type yields bare ``bytes``). Other numbers also
    stand as Python numbers, which compare and hash by exact value across ``int``,
    ``float`` and ``Decimal`` (so ``2**53 + 1`` is not the double ``2.0**53``, and the
    decimal ``0.1`` is not the double ``0.1``, as in MongoDB); everything else is a
    tagged tuple.
    """
    cls = value.__class__
    if cls is str or cls is int:
        token: Hashable = value
        return token
    if cls is ObjectId:
        oid: bytes = value.binary  # 12 bytes: hashed natively (ObjectId hashes in Python)
        return oid
    return _token(value)


def _token(value: Any) -> Hashable:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):  # Int64 and other int subclasses
        return int(value)
    if isinstance(value, float):
        return _NAN if value != value else value
    if isinstance(value, Decimal128):
        number = value.to_decimal()
        return _NAN if number.is_nan() else number
    if isinstance(value, Code):  # a str subclass: before str
        scope = None if value.scope is None else _token(value.scope)
        return ("code", str(value), scope)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return ("doc", tuple((str(k), id_token(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(id_token(v) for v in value))
    return _scalar_token(value)


def _scalar_token(value: Any) -> Hashable:
    if value is None:
        return ("null",)
    if isinstance(value, ObjectId):
        return value.binary
    if isinstance(value, datetime.datetime | DatetimeMS):
        millis = int(value) if isinstance(value, DatetimeMS) else int(DatetimeMS(value))
        return ("date", millis)
    if isinstance(value, uuid.UUID):
        return ("bin", 4, value.bytes)  # how a UUID is stored (uuidRepresentation=standard)
    if isinstance(value, Binary):
        return ("bin", value.subtype, bytes(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return ("bin", 0, bytes(value))
    if isinstance(value, Timestamp):
        return ("ts", value.time, value.inc)
    if isinstance(value, Regex):
        return ("regex", value.pattern, value.flags)
    if isinstance(value, MinKey):
        return ("minkey",)
    if isinstance(value, MaxKey):
        return ("maxkey",)
    if isinstance(value, DBRef):
        return _token(value.as_doc())
    return _opaque(value)


def _opaque(value: Any) -> Hashable:
    """Any other value stands for its BSON encoding (its type byte included), else its repr."""
    try:
        return ("bson", bson.encode({"": value}))
    except Exception:
        return ("repr", type(value).__qualname__, repr(value))
