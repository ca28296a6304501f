"""The invalidation message codec: round trips, BSON types, signatures, and total rejection."""

from __future__ import annotations

import datetime
import math
import uuid
from typing import Any

import bson
import orjson
import pytest
from bson import Decimal128, ObjectId
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clients import DOCUMENT_CODEC
from shared.errors import MESSAGE_ERROR_REASONS, MessageError
from shared.messages import (
    MAX_MESSAGE_BYTES,
    Message,
    decode,
    encode,
    encode_body,
    splice_seq,
)

KEY = b"k" * 32

json_scalars = (
    st.none()
    | st.booleans()
    | st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: not k.startswith("$")), children, max_size=4
        )
    ),
    max_leaves=20,
)
#: BSON dates as ``find`` decodes them under DATETIME_AUTO: naive UTC datetimes to the
#: millisecond in years 1..9999, ``DatetimeMS`` outside (year 10000 on, year 0 and before).
bson_dates = st.datetimes(
    min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)) | st.one_of(
    st.integers(min_value=253_402_300_800_000, max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=-62_135_596_800_001),
).map(DatetimeMS)
bson_values = st.recursive(
    json_scalars | bson_dates,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8).filter(lambda k: not k.startswith("$")), children, max_size=4
        )
    ),
    max_leaves=20,
)
docs = st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: not k.startswith("$")),
    bson_values,
    max_size=6,
)
numbers = st.floats(allow_nan=False, allow_infinity=False)
#: Every field name of the wire form.
FIELDS = [
    "v", "seq", "epoch", "kind", "key", "doc", "op", "cluster_time", "published_at",
    "refetch", "reason", "id", "sig",
]  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(["upsert", "delete", "resync", "heartbeat"]))
    refetch = kind == "upsert" and draw(st.booleans())
    key = draw(st.text(min_size=1, max_size=30)) if kind in ("upsert", "delete") else None
    doc_id = draw(st.none() | st.text(max_size=12) | st.integers(0, 2**40)) if key else None
    if kind == "delete" and doc_id is not None and draw(st.booleans()):
        key = None  # a delete by id only
    doc = draw(docs) if kind == "upsert" and not refetch else None
    return Message(
        kind=kind,
        seq=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        epoch=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        key=key,
        doc=doc,
        op=draw(st.none() | st.sampled_from(["insert", "update", "replace", "delete"])),
        cluster_time=draw(st.none() | numbers),
        published_at=draw(numbers),
        refetch=refetch,
        reason=draw(st.none() | st.text(max_size=20)) if kind == "resync" else None,
        doc_id=doc_id,
    )


@given(messages(), st.booleans())
def test_every_valid_message_round_trips(message: Message, signed: bool) -> None:
    """Encoding then decoding any valid message, signed or not, gives the same message."""
    key = KEY if signed else None
    assert decode(encode(message, hmac_key=key), hmac_key=key) == message


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_decode_or_raise_message_error(raw: bytes) -> None:
    """Arbitrary bytes either decode to a valid message or raise MessageError, nothing else."""
    try:
        message = decode(raw)
    except MessageError as e:
        assert e.reason in MESSAGE_ERROR_REASONS
    else:
        assert isinstance(message, Message)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(FIELDS),
        json_values | st.sampled_from(["upsert", "delete", "resync", "heartbeat"]),
    )
)
def test_any_json_object_decodes_or_raises_message_error(obj: dict[str, Any]) -> None:
    """Objects with the right field names but arbitrary values never escape as other errors."""
    for key in (None, KEY):
        try:
            decode(orjson.dumps(obj), hmac_key=key)
        except MessageError as e:
            assert e.reason in MESSAGE_ERROR_REASONS


@settings(max_examples=400)
@given(
    messages(),
    st.sampled_from(FIELDS),
    json_values | st.lists(json_values, max_size=3),
    st.booleans(),
)
def test_one_corrupted_field_of_a_valid_message_is_a_message_error(
    message: Message, field: str, value: Any, signed: bool
) -> None:
    """Replacing any one field of a valid message with any JSON value never escapes."""
    key = KEY if signed else None
    obj = orjson.loads(encode(message, hmac_key=key))
    obj[field] = value
    try:
        decode(orjson.dumps(obj), hmac_key=key)
    except MessageError as e:
        assert e.reason in MESSAGE_ERROR_REASONS


def test_unhashable_kind_is_rejected_not_crashing() -> None:
    """A kind that is a JSON array or object is a bad field, not a TypeError."""
    for kind in (b"[]", b"{}"):
        raw = b'{"v":1,"seq":1,"epoch":1,"kind":' + kind + b',"key":null,"doc":null,"op":null,'
        raw += b'"cluster_time":null,"published_at":1}'
        with pytest.raises(MessageError) as info:
            decode(raw)
        assert info.value.reason == "bad_field"


def test_deep_nesting_with_a_signature_is_rejected_not_crashing() -> None:
    """With HMAC on, a value nested deeper than the encoder re-encodes is a MessageError."""
    nested = b"[" * 300 + b"]" * 300
    raw = (
        b'{"v":1,"seq":1,"epoch":1,"kind":"resync","key":null,"doc":null,"op":null,'
        b'"cluster_time":null,"published_at":1,"sig":"00","extra":' + nested + b"}"
    )
    with pytest.raises(MessageError):
        decode(raw, hmac_key=KEY)


def test_delete_may_name_only_the_document_id() -> None:
    """A delete without a key but with the _id round-trips; one with neither is refused."""
    oid = ObjectId()
    message = Message(kind="delete", seq=3, epoch=1, key=None, doc_id=oid)
    assert decode(encode(message)).doc_id == oid
    with pytest.raises(MessageError):
        Message(kind="delete", seq=3, epoch=1, key=None)
    with pytest.raises(MessageError):
        Message(kind="upsert", seq=3, epoch=1, key=None, doc={}, doc_id=oid)


def test_bson_values_survive_the_trip_as_pymongo_returns_them() -> None:
    """ObjectId, datetime, Decimal128, binary, UUID and NaN come back as the types find returns."""
    doc = {
        "_id": ObjectId(),
        "source_id": "s1",
        "updated_at": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000),
        "price": Decimal128("12.50"),
        "blob": Binary(b"\x00\x01", 5),
        "plain_bytes": b"ab",
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "nested": [{"oid": ObjectId()}, 2**40],
        "nan": float("nan"),
    }
    message = Message(kind="upsert", seq=1, epoch=1, key="s1", doc=doc)
    back = decode(encode(message)).doc
    assert back is not None
    assert math.isnan(back.pop("nan"))
    expected = {k: v for k, v in doc.items() if k != "nan"}
    assert back == expected
    assert isinstance(back["_id"], ObjectId) and isinstance(back["price"], Decimal128)
    assert isinstance(back["blob"], Binary) and back["blob"].subtype == 5


@pytest.mark.parametrize(
    "millis",
    [
        253_402_300_800_000,  # 10000-01-01T00:00:00Z, one past datetime.max
        -62_135_596_800_001,  # one millisecond before 0001-01-01: year 0
        -62_198_755_200_000,  # 0000-01-01T00:00:00Z
        -(2**63),
        2**63 - 1,
    ],
)
def test_dates_outside_python_s_range_travel_as_number_long_and_come_back_as_find_reads_them(
    millis: int,
) -> None:
    """A year-10000 or year-0 date is {"$date": {"$numberLong": ...}} and decodes to DatetimeMS."""
    doc = {"_id": 1, "source_id": "s1", "when": DatetimeMS(millis), "in_range": DatetimeMS(0)}
    found = bson.decode(bson.encode(doc), DOCUMENT_CODEC)
    body = encode(Message(kind="upsert", seq=1, epoch=1, key="s1", doc=found))
    assert orjson.loads(body)["doc"]["when"] == {"$date": {"$numberLong": str(millis)}}
    back = decode(body).doc
    assert back == found
    assert type(back["when"]) is type(found["when"]) is DatetimeMS  # type: ignore[index]
    assert type(back["in_range"]) is type(found["in_range"]) is datetime.datetime  # type: ignore[index]


def test_body_has_no_seq_and_splice_puts_it_first() -> None:
    """The watcher's body omits seq; splicing yields the full message with that seq."""
    body = encode_body(Message(kind="heartbeat", seq=0, epoch=3, published_at=1.0))
    assert b'"seq"' not in body
    assert decode(splice_seq(body, 42)).seq == 42


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1,2]", "not_an_object"),
        (b'{"v":2,"seq":1}', "unknown_version"),
        (b'{"v":true,"seq":1}', "unknown_version"),
        (
            b'{"v":1,"epoch":1,"kind":"resync","key":null,"doc":null,"op":null,'
            b'"cluster_time":null,"published_at":1}',
            "missing_field",
        ),
        (
            b'{"v":1,"seq":-1,"epoch":1,"kind":"resync","key":null,"doc":null,"op":null,'
            b'"cluster_time":null,"published_at":1}',
            "bad_field",
        ),
        (
            b'{"v":1,"seq":1,"epoch":1,"kind":"upsert","key":null,"doc":{},"op":null,'
            b'"cluster_time":null,"published_at":1}',
            "bad_field",
        ),
        (
            b'{"v":1,"seq":1,"epoch":true,"kind":"resync","key":null,"doc":null,"op":null,'
            b'"cluster_time":null,"published_at":1}',
            "bad_field",
        ),
        (
            b'{"v":1,"seq":1,"epoch":1,"kind":"upsert","key":"a","doc":{"x":{"$oid":"zz"}},'
            b'"op":null,"cluster_time":null,"published_at":1}',
            "bad_field",
        ),
    ],
)
def test_malformed_messages_name_their_problem(raw: bytes, reason: str) -> None:
    """Each malformed input raises MessageError with the matching bounded reason."""
    with pytest.raises(MessageError) as info:
        decode(raw)
    assert info.value.reason == reason


def test_oversized_message_is_rejected_before_parsing() -> None:
    """A message over the size limit is refused as oversized."""
    with pytest.raises(MessageError) as info:
        decode(b" " * (MAX_MESSAGE_BYTES + 1))
    assert info.value.reason == "oversized"


def test_signature_is_required_and_checked_when_keyed() -> None:
    """With a key, unsigned and wrongly signed messages are rejected; a tampered doc too."""
    message = Message(kind="upsert", seq=1, epoch=1, key="a", doc={"x": 1})
    with pytest.raises(MessageError) as unsigned:
        decode(encode(message), hmac_key=KEY)
    assert unsigned.value.reason == "unsigned"
    with pytest.raises(MessageError) as wrong:
        decode(encode(message, hmac_key=b"other" * 8), hmac_key=KEY)
    assert wrong.value.reason == "bad_signature"
    tampered = encode(message, hmac_key=KEY).replace(b'"x":1', b'"x":2')
    with pytest.raises(MessageError) as changed:
        decode(tampered, hmac_key=KEY)
    assert changed.value.reason == "bad_signature"


def test_deeply_nested_document_is_rejected_not_crashing() -> None:
    """A document nested deeper than the decoder can walk is a MessageError, not a crash."""
    depth = 2000
    raw = (
        b'{"v":1,"seq":1,"epoch":1,"kind":"upsert","key":"a","op":null,"cluster_time":null,'
        b'"published_at":1,"doc":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    )
    with pytest.raises(MessageError):
        decode(raw)


_field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(["upsert", "delete", "resync", "heartbeat"]),
    st.lists(st.integers(min_value=-1, max_value=2**33), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_names = [
    "seq", "epoch", "kind", "key", "doc", "op", "cluster_time", "published_at",
    "term", "ct", "behind", "refetch", "reason",
]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={name: _field_values for name in _names},
    ),
    st.fixed_dictionaries(
        {
            "seq": st.integers(0, 9),
            "epoch": st.integers(0, 9),
            "kind": st.sampled_from(["upsert", "delete", "resync", "heartbeat"]),
            "key": st.none() | st.just("k"),
            "doc": st.none() | st.just({"a": 1}),
            "op": st.none() | st.just("insert"),
            "cluster_time": st.none() | st.floats(0, 10),
            "published_at": st.floats(0, 10),
        }
    ),
)
def test_the_fast_field_check_accepts_only_what_the_detailed_one_accepts(
    noise: dict[str, Any], base: dict[str, Any]
) -> None:
    """Whenever the one-pass check accepts a message, the field-by-field one agrees."""
    from shared import messages

    for obj in (noise, {**base, **noise}, base):
        fast = messages._fast_fields(obj)
        if fast is None:
            continue
        try:
            checked = messages._checked_fields(obj)
        except MessageError as e:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"fast path accepted what the checked path refuses: {e}") from e
        try:
            expected = messages._build(obj, *checked)
        except MessageError:
            with pytest.raises(MessageError):
                messages._build(obj, *fast)
            continue
        assert messages._build(obj, *fast) == expected


def _reference_to_ejson(value: Any) -> Any:
    """The general conversion, type test by type test (what the shortcut must equal)."""
    from bson import json_util

    from shared.ejson import EJSON_OPTIONS

    if isinstance(value, dict):
        return {str(k): _reference_to_ejson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_to_ejson(v) for v in value]
    if value is None or value.__class__ is str or isinstance(value, bool):
        return value
    if isinstance(value, int) and -(2**63) <= value <= 2**63 - 1:
        return int(value)
    if isinstance(value, float) and math.isfinite(value):
        return value
    return json_util.default(value, json_options=EJSON_OPTIONS)


@settings(max_examples=300, deadline=None)
@given(bson_values)
def test_the_plain_value_shortcut_of_to_ejson_changes_nothing(value: Any) -> None:
    """Documents convert exactly as the general, type-by-type conversion does."""
    from shared.ejson import to_ejson

    doc = {"v": value, "nested": {"w": value, "list": [value, 1, "s"]}, 7: math.inf}
    assert orjson.dumps(to_ejson(doc)) == orjson.dumps(_reference_to_ejson(doc))
