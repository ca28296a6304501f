"""MongoDB relaxed extended JSON: how documents travel inside invalidation messages.

Why a module of its own: every change of every message is converted twice (by the
watcher to JSON-ready types, by each replica back to BSON types), so this is the hot path
of a burst; it is kept apart from the message format it serves (:mod:`shared.messages`).

ObjectId → ``{"$oid":…}``, datetime → ``{"$date":…}``, Decimal128 → ``{"$numberDecimal":…}``,
binary → ``{"$binary":…}``, non-finite floats → ``{"$numberDouble":…}``; :func:`from_ejson`
turns them back into the same BSON types PyMongo returns from ``find``.
"""

from __future__ import annotations

import math
from typing import Any, Final

from bson import json_util
from bson.binary import UUID_SUBTYPE, Binary, UuidRepresentation
from bson.codec_options import DatetimeConversion
from bson.errors import InvalidId
from bson.json_util import JSONMode, JSONOptions
from bson.objectid import ObjectId

EJSON_OPTIONS: Final = JSONOptions(
    json_mode=JSONMode.RELAXED,
    tz_aware=False,
    uuid_representation=UuidRepresentation.STANDARD,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
#: Decoding keeps every binary a ``Binary`` (json_util would read subtype 3 as a legacy
#: UUID, which ``find`` never does); :func:`_as_found` then applies PyMongo's own rule.
_EJSON_READ_OPTIONS: Final = JSONOptions(
    json_mode=JSONMode.RELAXED,
    tz_aware=False,
    uuid_representation=UuidRepresentation.UNSPECIFIED,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def to_ejson(value: Any) -> Any:
    """A BSON value (document, list, scalar) as relaxed extended JSON made of plain types.

    Plain JSON values of the exact built-in types (most of a config) are taken as they
    are in one type test each; everything else -- subclasses, BSON types, out-of-range
    ints, non-finite floats -- goes through :func:`_to_ejson_any` (same result, slower).
    """
    kind = type(value)
    if kind is dict:
        out = {}
        for k, v in value.items():
            vk = type(v)
            plain = vk is str or vk is bool or v is None or (vk is float and math.isfinite(v))
            out[k if type(k) is str else str(k)] = v if plain else to_ejson(v)
        return out
    if kind is list:
        return [to_ejson(v) for v in value]
    if kind is str or kind is bool or value is None:
        return value
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if kind is float and math.isfinite(value):
        return value
    return _to_ejson_any(value)


def _to_ejson_any(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_ejson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_ejson(v) for v in value]
    if value is None or value.__class__ is str or isinstance(value, bool):
        return value
    if _is_int(value) and _INT64_MIN <= value <= _INT64_MAX:
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return json_util.default(value, json_options=EJSON_OPTIONS)


def from_ejson(value: Any) -> Any:
    """Relaxed extended JSON back to the BSON types PyMongo's ``find`` would return.

    That is: the decoding of :data:`shared.clients.MONGO_DOCUMENT_OPTIONS` -- a date
    outside ``datetime``'s years 1..9999 is a ``DatetimeMS`` (``{"$date": {"$numberLong":
    ...}}`` on the wire), any other date a naive UTC ``datetime``; binary subtype 4 of 16
    bytes is a ``UUID``, subtype 0 is ``bytes``, every other binary a ``Binary``.

    Converts *in place* (the containers of ``value`` are reused, wrappers replaced by the
    values they stand for): decoders hand it what ``orjson.loads`` just made, and a
    replica decodes every change of every batch, so no copy is made of documents that
    are plain JSON already. Inner wrappers are converted before outer ones (as
    ``json.loads(object_hook=...)`` would).
    """
    kind = type(value)
    if kind is dict:
        return _dict_from_ejson(value)
    if kind is list:
        _list_from_ejson(value)
    return value


def _list_from_ejson(value: list[Any]) -> None:
    for i, item in enumerate(value):
        kind = type(item)
        if kind is dict:
            value[i] = _dict_from_ejson(item)
        elif kind is list:
            _list_from_ejson(item)


def _dict_from_ejson(value: dict[str, Any]) -> Any:
    wrapper = False
    for k, v in value.items():
        kind = type(v)
        if kind is dict:
            converted = _dict_from_ejson(v)
            if converted is not v:
                value[k] = converted  # same key: the dict's size does not change
        elif kind is list:
            _list_from_ejson(v)
        if k[:1] == "$":
            wrapper = True
    if not wrapper:
        return value
    if len(value) == 1 and type(value.get("$oid")) is str and len(value["$oid"]) == 24:
        try:
            return ObjectId(value["$oid"])
        except InvalidId:
            pass  # json_util says what is wrong with it
    return _as_found(json_util.object_hook(value, json_options=_EJSON_READ_OPTIONS))


def _as_found(value: Any) -> Any:
    if isinstance(value, Binary) and value.subtype == UUID_SUBTYPE and len(value) == 16:
        return value.as_uuid(UuidRepresentation.STANDARD)
    return value
