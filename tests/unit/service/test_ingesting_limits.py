"""The body limits judged before routing: nesting depth, 64-bit integers, blob hosts."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.event_checks import MAX_DEPTH, LimitError, check_document, host_allowed


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth_limit_is_exact_and_names_the_place() -> None:
    """Containers nest MAX_DEPTH deep below an event; one more is refused, naming the place."""
    ok = [{"id": "a"}, {"id": "b", "data": nested(MAX_DEPTH)}]
    check_document(orjson.dumps(ok), ok, where="events")
    deep = [{"id": "a"}, {"id": "b", "data": nested(MAX_DEPTH + 1)}]
    with pytest.raises(LimitError, match=r"^events\[1\]\.data(\[0\])*: nested deeper than 32"):
        check_document(orjson.dumps(deep), deep, where="events")


def test_wide_integers_come_back_as_exact_strings() -> None:
    """Integers outside [-2**63, 2**64) are returned as their digits; the rest stay ints."""
    raw = json.dumps({"a": 2**64, "b": 2**64 - 1, "c": -(2**63), "d": -(2**63) - 1}).encode()
    assert check_document(raw, orjson.loads(raw), where="event") == {
        "a": "18446744073709551616",
        "b": 2**64 - 1,
        "c": -(2**63),
        "d": "-9223372036854775809",
    }


def test_digits_inside_strings_are_left_alone() -> None:
    """A long digit run inside a string is not an integer and is kept as written."""
    raw = b'{"id": "12345678901234567890123", "n": 1.5}'
    assert check_document(raw, orjson.loads(raw), where="event") == orjson.loads(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=40,
)


@given(document=json_values)
def test_check_document_returns_or_raises_limit_error_only(document: Any) -> None:
    """Whatever JSON the parser accepted, the check returns a storable document or LimitError."""
    raw = json.dumps(document).encode()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # orjson refused it before the check would run
    try:
        judged = check_document(raw, parsed, where="event")
    except LimitError:
        return
    orjson.dumps(judged)  # storable


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("acct.blob.core.windows.net", {"*.blob.core.windows.net"}, True),
        ("evil.example", {"*.blob.core.windows.net"}, False),
        ("blob.core.windows.net.evil.example", {"*.blob.core.windows.net"}, False),
        ("ACCT.example.", {"acct.example"}, True),
        (None, {"acct.example"}, False),
        ("anything", set(), True),
    ],
)
def test_host_allow_list(host: str | None, allowed: set[str], expected: bool) -> None:
    """Exact and ``*.suffix`` entries match case-insensitively; an empty list allows all."""
    assert host_allowed(host, frozenset(allowed)) is expected


def test_long_digit_runs_in_strings_do_not_reparse_and_wide_tokens_do() -> None:
    """A digit run in a string keeps orjson's document; a wide number token is kept exact."""
    body = b'[{"sequencer": "00000000000000000000000000000abc", "n": 5}]'
    document = orjson.loads(body)
    assert check_document(body, document, where="events") is document
    for raw, expected in [
        (b'{"a":\n\t18446744073709551616\n}', {"a": "18446744073709551616"}),
        (b'[-9223372036854775809]', ["-9223372036854775809"]),
        (b'{"s": "x 99999999999999999999 y", "b": 99999999999999999999}',
         {"s": "x 99999999999999999999 y", "b": "99999999999999999999"}),
    ]:  # fmt: skip
        assert check_document(raw, orjson.loads(raw), where="event") == expected
