"""Resume-token encoding: lossless round trip, and corrupt input refused clearly."""

from __future__ import annotations

import bson
import pytest
from bson import Binary, ObjectId
from bson.timestamp import Timestamp

from watcher.errors import CorruptToken
from watcher.resuming import dump_token, parse_token


def test_tokens_round_trip_with_every_bson_type_intact() -> None:
    """Canonical extended JSON keeps binary, timestamps and ObjectIds: same BSON bytes back."""
    token = {
        "_data": "826A1B2C3D000000012B022C0100296E5A1004",
        "_typeBits": Binary(b"\x01\x02", 0),
        "ts": Timestamp(5, 6),
        "oid": ObjectId(),
    }
    assert bson.encode(parse_token(dump_token(token))) == bson.encode(token)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", "{}", '"x"', '{"$oid": "zz"}'])
def test_corrupt_tokens_raise_corrupt_token(text: str) -> None:
    """Anything that is not a non-empty token document raises CorruptToken."""
    with pytest.raises(CorruptToken):
        parse_token(text)
