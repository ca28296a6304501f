"""Document identity: keys (plain or dotted) and hashable _id tokens, shared by both sides."""

from __future__ import annotations

from bson import ObjectId

from shared.documents import id_token, key_of


def test_id_tokens_are_equal_exactly_when_ids_are() -> None:
    """Equal _ids give equal tokens; different values or types (even 1 vs True) do not."""
    oid = ObjectId()
    assert id_token(oid) == id_token(ObjectId(str(oid)))
    assert id_token(oid) != id_token(ObjectId())
    assert id_token({"a": 1, "b": [2]}) == id_token({"a": 1, "b": [2]})
    assert id_token({"a": 1}) != id_token({"a": 2})
    assert len({id_token(1), id_token(True), id_token("1"), id_token(oid.binary)}) == 4
    assert id_token(oid) != id_token(oid.binary)


def test_key_of_reads_plain_and_dotted_fields() -> None:
    """The key is a non-empty string at the (possibly dotted) key field, else None."""
    assert key_of({"source_id": "a"}, "source_id") == "a"
    assert key_of({"source_id": ""}, "source_id") is None
    assert key_of({"source_id": 3}, "source_id") is None
    assert key_of({"meta": {"id": "m"}}, "meta.id") == "m"
    assert key_of({"meta": "x"}, "meta.id") is None
