"""``Snapshot.build`` (the warm-up's fast path) equals putting the documents one by one."""

from __future__ import annotations

from typing import Any

from bson import Int64
from hypothesis import given, settings
from hypothesis import strategies as st

from service.snapshot import Snapshot
from shared.documents import key_of

KEYS = st.one_of(st.none(), st.just(""), st.integers(0, 3), st.sampled_from(["a", "b", "c", "d"]))
IDS = st.one_of(st.integers(0, 4), st.builds(Int64, st.integers(0, 4)), st.floats(0, 4))
CONTAINERS = st.one_of(st.none(), st.just(""), st.sampled_from(["x", "y"]), st.integers(0, 1))


@st.composite
def documents(draw: Any, key_field: str) -> dict[str, Any]:
    """A document with maybe a key, maybe an ``_id`` and maybe a landing container."""
    doc: dict[str, Any] = {"n": draw(st.integers())}
    key = draw(KEYS)
    if key is not None:
        if "." in key_field:
            doc["meta"] = {"sid": key}
        else:
            doc[key_field] = key
    if draw(st.booleans()):
        doc["_id"] = draw(IDS)
    container = draw(CONTAINERS)
    if container is not None:
        doc["ingestion"] = {"landing_container": container}
    return doc


def _one_by_one(docs: list[dict[str, Any]], key_field: str) -> tuple[Snapshot, int]:
    snapshot, skipped = Snapshot(floor=(1, 2)), 0
    for doc in docs:
        key = key_of(doc, key_field)
        if key is None:
            skipped += 1
        else:
            snapshot.put(key, doc)
    return snapshot, skipped


@settings(max_examples=300, deadline=None)
@given(
    key_field=st.sampled_from(["source_id", "meta.sid"]),
    data=st.data(),
)
def test_build_equals_putting_each_document(key_field: str, data: Any) -> None:
    """Repeated keys, equal ``_id`` values, missing keys: the same maps as put() gives."""
    docs = data.draw(st.lists(documents(key_field), max_size=12))
    built, skipped = Snapshot.build(docs, key_field=key_field, floor=(1, 2))
    expected, expected_skipped = _one_by_one(docs, key_field)
    assert skipped == expected_skipped
    assert built.by_key == expected.by_key
    assert built.by_id == expected.by_id
    assert built.by_container == expected.by_container
    assert built.floor == (1, 2)
