"""The batch message codec: round trips, per-change fields, one signature, bad changes named."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.batches import BATCH_VERSION, decode_batch, encode_batch
from shared.errors import MessageError
from shared.messages import Message, decode, encode

KEY = b"k" * 32


def change(i: int, *, seq: int = 1, **fields: Any) -> Message:
    base: dict[str, Any] = {
        "kind": "upsert",
        "seq": seq + i,
        "epoch": 3,
        "term": "t-1",
        "key": f"k{i}",
        "doc": {"_id": ObjectId(b"\x00" * 11 + bytes([i])), "n": i},
        "doc_id": ObjectId(b"\x00" * 11 + bytes([i])),
        "op": "insert",
        "cluster_time": 1_700_000_000 + i / 1e6,
        "ct": (1_700_000_000, i),
        "published_at": 1.5,
    }
    base.update(fields)
    return Message(**base)


def batch(n: int, seq: int = 10) -> list[Message]:
    return [change(i, seq=seq) for i in range(n)]


def test_a_batch_round_trips_with_consecutive_seqs_and_each_change_own_cluster_time() -> None:
    """Every change comes back equal, numbered first seq + index, with its own ``ct``."""
    messages = batch(4)
    decoded = decode_batch(encode_batch(messages))
    assert decoded.changes == tuple(messages)
    assert list(decoded.seqs) == [10, 11, 12, 13]
    assert [c.ct for c in decoded.changes] == [(1_700_000_000, i) for i in range(4)]


def test_the_wire_form_carries_the_first_seq_and_a_list_of_changes() -> None:
    """``v`` is 2, ``seq`` the first of the range, and the changes carry no envelope fields."""
    obj = orjson.loads(encode_batch(batch(2)))
    assert (obj["v"], obj["seq"], len(obj["changes"])) == (BATCH_VERSION, 10, 2)
    assert not {"seq", "epoch", "term", "published_at"} & set(obj["changes"][0])


def test_deletes_by_id_and_refetches_travel_in_a_batch() -> None:
    """Key-only refetches and deletes naming only an ``_id`` keep their meaning."""
    messages = [
        change(0, seq=5, doc=None, refetch=True),
        change(1, seq=5, kind="delete", key=None, doc=None),
    ]
    assert decode_batch(encode_batch(messages)).changes == tuple(messages)


def test_a_single_change_message_reads_as_a_batch_of_one() -> None:
    """A ``v: 1`` message (heartbeat included) decodes as a batch holding that message."""
    single = change(0, seq=7)
    heartbeat = Message(kind="heartbeat", seq=7, epoch=3, term="t-1", published_at=2.0)
    assert decode_batch(encode(single)).changes == (single,)
    assert decode_batch(encode(heartbeat)).changes == (heartbeat,)


def test_the_single_message_decoder_refuses_a_batch_and_says_what_to_use() -> None:
    """``decode`` (one message) names ``decode_batch`` for a ``v: 2`` message."""
    with pytest.raises(MessageError, match="decode_batch") as caught:
        decode(encode_batch(batch(2)))
    assert caught.value.reason == "unknown_version"


def test_one_signature_covers_the_whole_batch() -> None:
    """A signed batch verifies; unsigned or signed with another key, it is refused."""
    messages = batch(3)
    assert decode_batch(encode_batch(messages, hmac_key=KEY), hmac_key=KEY).changes == tuple(
        messages
    )
    with pytest.raises(MessageError) as caught:
        decode_batch(encode_batch(messages), hmac_key=KEY)
    assert caught.value.reason == "unsigned"
    with pytest.raises(MessageError) as caught:
        decode_batch(encode_batch(messages, hmac_key=b"x" * 32), hmac_key=KEY)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"key":"k2"', b'"key":"k9"'),  # another key
        (b'"n":1', b'"n":5'),  # another document
        (b'"ct":[1700000000,2]', b'"ct":[1700000001,2]'),  # a newer cluster time
        (b'"epoch":3', b'"epoch":4'),  # the envelope
    ],
)
def test_tampering_with_any_change_breaks_the_signature(old: bytes, new: bytes) -> None:
    """Changing one byte of meaning in any change (or the envelope) fails verification."""
    raw = encode_batch(batch(3), hmac_key=KEY)
    assert old in raw
    with pytest.raises(MessageError) as caught:
        decode_batch(raw.replace(old, new, 1), hmac_key=KEY)
    assert caught.value.reason == "bad_signature"


def test_dropping_a_change_from_a_signed_batch_is_detected() -> None:
    """Removing a change (which would shift the seqs of the others) fails verification."""
    obj = orjson.loads(encode_batch(batch(3), hmac_key=KEY))
    del obj["changes"][1]
    with pytest.raises(MessageError) as caught:
        decode_batch(orjson.dumps(obj), hmac_key=KEY)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("patch", "reason", "words"),
    [
        ({"ct": [1, -1]}, "bad_field", "changes[2]: ct"),
        ({"kind": "heartbeat"}, "bad_field", "changes[2]: kind must be upsert or delete"),
        ({"kind": "resync"}, "bad_field", "changes[2]: kind"),
        ({"key": ""}, "bad_field", "changes[2]: upsert needs"),
        ({"doc": [1]}, "bad_field", "changes[2]: doc must be"),
        ({"doc": {"$date": "nonsense"}}, "bad_field", "changes[2]: doc or id"),
        ({"cluster_time": "soon"}, "bad_field", "changes[2]: cluster_time"),
    ],
)
def test_a_bad_change_is_named_by_its_index(patch: dict[str, Any], reason: str, words: str) -> None:
    """Decoding validates every change and says which one is bad."""
    obj = orjson.loads(encode_batch(batch(4)))
    obj["changes"][2].update(patch)
    with pytest.raises(MessageError) as caught:
        decode_batch(orjson.dumps(obj))
    assert caught.value.reason == reason
    assert words in caught.value.detail


@pytest.mark.parametrize(
    "obj",
    [
        {"v": 2, "seq": 1, "epoch": 1, "term": "", "published_at": 1.0, "changes": []},
        {"v": 2, "seq": 1, "epoch": 1, "term": "", "published_at": 1.0, "changes": "x"},
        {"v": 2, "seq": 1, "epoch": 1, "term": "", "published_at": 1.0},
        {"v": 2, "seq": "1", "epoch": 1, "published_at": 1.0, "changes": [{"kind": "delete"}]},
        {"v": 2, "epoch": 1, "published_at": 1.0, "changes": [{"kind": "delete", "key": "a"}]},
        {"v": 2, "seq": 1, "published_at": 1.0, "changes": [{"kind": "delete", "key": "a"}]},
        {"v": 2, "seq": 1, "epoch": 1, "published_at": 1.0, "changes": [7]},
        {"v": 3, "seq": 1},
    ],
)
def test_a_malformed_envelope_is_refused_with_a_message_error(obj: dict[str, Any]) -> None:
    """An empty, missing or malformed change list, seq or epoch is a ``MessageError``."""
    with pytest.raises(MessageError):
        decode_batch(orjson.dumps(obj))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_nothing_but_message_errors_escape_whatever_the_bytes(raw: bytes) -> None:
    """Arbitrary bytes (a ``v: 2`` prefix included) decode or raise ``MessageError`` only."""
    for data in (raw, b'{"v":2,"seq":1,"epoch":1,"published_at":1,"changes":[' + raw + b"]}"):
        try:
            decode_batch(data)
        except MessageError:
            pass
