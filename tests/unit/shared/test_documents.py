"""Document identity: keys (plain or dotted) and _id tokens that follow MongoDB's comparison rules.

The oracle below is written from the MongoDB manual's "Comparison/Sort Order" page, not
from the code under test: type brackets (MinKey, null, numbers, strings, objects, arrays,
BinData, ObjectId, booleans, dates, timestamps, regular expressions, code, MaxKey),
numbers by exact value whatever their BSON type, objects field by field in order (value
type, then field name, then value), arrays element by element, BinData by length, subtype,
then bytes.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from fractions import Fraction
from typing import Any

import bson
import orjson
from bson import Code, Decimal128, Int64, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.max_key import MaxKey
from bson.min_key import MinKey
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.documents import id_token, key_of
from shared.messages import from_ejson, to_ejson

# --------------------------------------------------------------------------- the oracle
_BRACKETS = [
    (MinKey, 0), (type(None), 1), (str, 4), (dict, 5), (list, 6), (Binary, 7), (uuid.UUID, 7),
    (bytes, 7), (ObjectId, 8), (bool, 9), (datetime.datetime, 10), (DatetimeMS, 10),
    (Timestamp, 11), (Regex, 12), (Code, 13), (MaxKey, 14),
]  # fmt: skip


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal128) and not isinstance(v, bool)


def bracket(v: Any) -> int:
    """The manual's type order; numbers are one bracket (3)."""
    if _is_number(v):
        return 3
    if isinstance(v, Code):
        return 13
    for cls, rank in _BRACKETS:
        if isinstance(v, cls):
            return rank
    raise AssertionError(f"no bracket for {v!r}")


def _number_key(v: Any) -> tuple[int, Fraction]:
    """NaN lowest, then -inf, finite values by exact value, +inf."""
    d = v.to_decimal() if isinstance(v, Decimal128) else v
    if isinstance(d, decimal.Decimal):
        if d.is_nan():
            return (0, Fraction(0))
        if d.is_infinite():
            return (1 if d < 0 else 3, Fraction(0))
        return (2, Fraction(d))
    if isinstance(d, float):
        if math.isnan(d):
            return (0, Fraction(0))
        if math.isinf(d):
            return (1 if d < 0 else 3, Fraction(0))
    return (2, Fraction(d))


def _binary(v: Any) -> tuple[int, int, bytes]:
    if isinstance(v, uuid.UUID):
        return (16, 4, v.bytes)
    if isinstance(v, Binary):
        return (len(v), v.subtype, bytes(v))
    return (len(v), 0, bytes(v))


def _millis(v: Any) -> int:
    if isinstance(v, DatetimeMS):
        return int(v)
    delta = v - datetime.datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _cmp_objects(a: dict[str, Any], b: dict[str, Any]) -> int:
    for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=False):
        for c in (_cmp(bracket(va), bracket(vb)), _cmp(ka.encode(), kb.encode())):
            if c:
                return c
        if c := mongo_cmp(va, vb):
            return c
    return _cmp(len(a), len(b))


def _cmp_arrays(a: list[Any], b: list[Any]) -> int:
    for va, vb in zip(a, b, strict=False):
        if c := mongo_cmp(va, vb):
            return c
    return _cmp(len(a), len(b))


#: How two values of one bracket order: a sort key per bracket (MinKey, null, MaxKey: level).
_KEYS: dict[int, Any] = {
    0: lambda v: 0,
    1: lambda v: 0,
    3: _number_key,
    4: lambda v: v.encode(),
    7: _binary,
    8: lambda v: v.binary,
    9: lambda v: v,
    10: _millis,
    11: lambda v: (v.time, v.inc),
    12: lambda v: (v.pattern, v.flags),
    13: str,
    14: lambda v: 0,
}


def mongo_cmp(a: Any, b: Any) -> int:
    """-1, 0 or 1 as MongoDB orders ``a`` and ``b``."""
    ra, rb = bracket(a), bracket(b)
    if ra != rb:
        return _cmp(ra, rb)
    if ra == 5:
        return _cmp_objects(a, b)
    if ra == 6:
        return _cmp_arrays(a, b)
    key = _KEYS[ra]
    return _cmp(key(a), key(b))


# --------------------------------------------------------------------------- values
def _decimal128(d: decimal.Decimal) -> Decimal128 | None:
    try:
        value = Decimal128(d)
    except Exception:
        return None
    return value if value.to_decimal().compare_total(d) == 0 else None


special_decimals = st.sampled_from(
    ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "-0", "0E+6111", "1E+6144", "1E-6176",
     "9.999999999999999999999999999999999E+6144", "1.000", "0.1", "9007199254740993"]
).map(Decimal128)  # fmt: skip
decimals128 = special_decimals | st.decimals(allow_nan=False, places=None).map(_decimal128).filter(
    lambda d: d is not None
)
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
numbers = (
    int64s
    | int64s.map(Int64)
    | st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1])
    | st.floats()
    | st.sampled_from([0.0, -0.0, 0.1, 2.0**53, 2.0**63, math.inf, -math.inf, math.nan])
    | decimals128
)
dates = st.integers(min_value=-(2**62), max_value=2**62).map(DatetimeMS) | st.datetimes(
    min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
binaries = st.builds(Binary, st.binary(max_size=8), st.sampled_from([0, 3, 5, 128])) | st.binary(
    max_size=8
)
scalars = (
    numbers
    | st.booleans()
    | st.text(max_size=6)
    | st.binary(min_size=12, max_size=12).map(ObjectId)
    | dates
    | binaries
    | st.uuids()
    | st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    | st.builds(
        Regex, st.text(max_size=4).filter(lambda p: "\x00" not in p), st.sampled_from([0, 2, 8])
    )
    | st.builds(Code, st.text(max_size=4))
    | st.just(None)
    | st.just(MinKey())
    | st.just(MaxKey())
)
field_names = st.sampled_from(["a", "b", "c", "_id", "x.y"])
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=3)
    ),
    max_leaves=8,
)
#: What may be an ``_id``: anything but an array (MongoDB refuses array and regex ``_id``\s).
ids = values.filter(lambda v: not isinstance(v, list | Regex))


@st.composite
def twin(draw: st.DrawFn, value: Any) -> Any:
    """A value MongoDB holds equal to ``value``, but possibly of other BSON types."""
    if isinstance(value, dict):
        return {k: draw(twin(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [draw(twin(v)) for v in value]
    if isinstance(value, DatetimeMS):
        try:
            in_range = value.as_datetime()
        except Exception:  # outside datetime's years 1..9999: only a DatetimeMS holds it
            return value
        return draw(st.sampled_from([value, in_range]))
    if isinstance(value, datetime.datetime):
        return draw(st.sampled_from([value, DatetimeMS(value)]))
    if isinstance(value, uuid.UUID):
        return draw(st.sampled_from([value, Binary(value.bytes, 4)]))
    if not _is_number(value):
        return value
    return draw(st.sampled_from(_numeric_twins(value)))


def _numeric_twins(value: Any) -> list[Any]:
    exact = value.to_decimal() if isinstance(value, Decimal128) else value
    if isinstance(exact, decimal.Decimal) and exact.is_nan() or exact != exact:
        return [value, math.nan, Decimal128("NaN"), Decimal128("-NaN")]
    out = [value]
    infinite = exact.is_infinite() if isinstance(exact, decimal.Decimal) else math.isinf(exact)
    if infinite:
        return [*out, float(exact), Decimal128(str(exact))]
    as_float = float(exact)
    if math.isfinite(as_float) and Fraction(as_float) == Fraction(exact):
        out.append(as_float)
    if Fraction(exact).denominator == 1 and -(2**63) <= int(exact) < 2**63:
        out += [int(exact), Int64(int(exact))]
    as_dec = _decimal128(decimal.Decimal(exact) if not isinstance(exact, int) else exact)
    if as_dec is not None and Fraction(as_dec.to_decimal()) == Fraction(exact):
        out.append(as_dec)
    return out


# --------------------------------------------------------------------------- the properties
@given(st.data(), ids)
def test_values_mongodb_holds_equal_have_one_token(data: st.DataObject, value: Any) -> None:
    """Any retyping MongoDB holds equal (1, Int64(1), 1.0, Decimal128('1'), ...) keeps the token."""
    other = data.draw(twin(value))
    assert mongo_cmp(value, other) == 0  # the oracle agrees these are one _id
    assert id_token(value) == id_token(other)
    assert hash(id_token(value)) == hash(id_token(other))


@given(ids, ids)
def test_tokens_are_equal_exactly_when_mongodb_compares_equal(a: Any, b: Any) -> None:
    """Two arbitrary _ids have equal tokens if and only if MongoDB's ordering puts them level."""
    assert (id_token(a) == id_token(b)) == (mongo_cmp(a, b) == 0)


@given(st.dictionaries(field_names, values, min_size=2, max_size=4))
def test_embedded_documents_compare_in_field_order(doc: dict[str, Any]) -> None:
    """The same fields in another order are another _id (MongoDB compares field by field)."""
    shuffled = dict(reversed(list(doc.items())))
    assume(list(shuffled) != list(doc))
    assert mongo_cmp(doc, shuffled) != 0
    assert id_token(doc) != id_token(shuffled)


@given(ids)
def test_an_id_keeps_its_token_through_a_reload_and_through_a_message(value: Any) -> None:
    """BSON as a reload decodes it and extended JSON as a message carries it name one document."""
    codec: CodecOptions[dict[str, Any]] = CodecOptions(
        uuid_representation=bson.binary.UuidRepresentation.STANDARD,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )
    reloaded = bson.decode(bson.encode({"_id": value}, codec_options=codec), codec)["_id"]
    messaged = from_ejson(orjson.loads(orjson.dumps(to_ejson({"_id": reloaded}))))["_id"]
    assert id_token(reloaded) == id_token(value)
    assert id_token(messaged) == id_token(reloaded)


def test_the_cases_the_issue_names() -> None:
    """1, Int64(1), 1.0 and Decimal128('1') are one _id; True, '1' and b'\\x01' are others."""
    one = {id_token(v) for v in (1, Int64(1), 1.0, Decimal128("1"), Decimal128("1.000"))}
    assert len(one) == 1
    assert len(one | {id_token(True), id_token("1"), id_token(b"\x01")}) == 4
    assert id_token(Int64(2**53 + 1)) != id_token(2.0**53)
    assert id_token(Decimal128("0.1")) != id_token(0.1)
    assert id_token(Decimal128("-0")) == id_token(0) == id_token(-0.0)
    assert id_token(Decimal128("NaN")) == id_token(math.nan) == id_token(Decimal128("sNaN"))
    assert id_token(Binary(b"ab", 0)) != id_token(Binary(b"ab", 5))
    assert id_token({"a": 1, "b": Int64(2)}) == id_token({"a": 1.0, "b": 2})
    assert id_token({"a": 1, "b": 2}) != id_token({"b": 2, "a": 1})


def test_plain_ids_stay_on_the_cheap_path() -> None:
    """A str or int _id is its own token and an ObjectId its 12 bytes (no tuple built)."""
    oid = ObjectId()
    assert id_token("abc") == "abc"
    assert id_token(7) == 7
    assert id_token(oid) == oid.binary
    assert id_token(oid) == id_token(ObjectId(str(oid)))
    assert id_token(oid) != id_token(oid.binary)  # bytes are BinData, not an ObjectId


def test_key_of_reads_plain_and_dotted_fields() -> None:
    """The key is a non-empty string at the (possibly dotted) key field, else None."""
    assert key_of({"source_id": "a"}, "source_id") == "a"
    assert key_of({"source_id": ""}, "source_id") is None
    assert key_of({"source_id": 3}, "source_id") is None
    assert key_of({"meta": {"id": "m"}}, "meta.id") == "m"
    assert key_of({"meta": "x"}, "meta.id") is None
