"""Property checks of the double's change history against a model of the writes (double only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration

Op = tuple[str, int]
operations = st.lists(
    st.tuples(st.sampled_from(["insert", "update", "replace", "delete"]), st.integers(0, 3)),
    min_size=1,
    max_size=12,
)


@pytest.fixture(scope="module")
def sync_client() -> Iterator[MongoClient[dict[str, Any]]]:
    """One double and one synchronous client for every generated example of this module."""
    client: MongoClient[dict[str, Any]]
    with MongoDouble() as double, MongoClient(double.uri) as client:
        yield client


def apply(coll: Any, op: Op) -> str | None:
    """Run one write; return the event type a server emits for it (None: no event)."""
    kind, key = op
    if kind == "insert":
        try:
            coll.insert_one({"_id": key, "v": 0})
        except DuplicateKeyError:
            return None
        return "insert"
    if kind == "update":
        return (
            "update" if coll.update_one({"_id": key}, {"$inc": {"v": 1}}).modified_count else None
        )
    if kind == "replace":
        result = coll.replace_one({"_id": key}, {"v": -1, "r": True})
        return "replace" if result.modified_count else None
    return "delete" if coll.delete_one({"_id": key}).deleted_count else None


def read_all(stream: Any) -> list[dict[str, Any]]:
    events = []
    while (event := stream.try_next()) is not None:
        events.append(event)
    return events


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations, cut=st.integers(0, 11), name=st.uuids())
def test_resume_after_any_event_replays_exactly_the_rest(
    sync_client: MongoClient[dict[str, Any]], ops: list[Op], cut: int, name: Any
) -> None:
    """Events follow the writes one to one, and resuming after event k yields events k+1..n."""
    coll = sync_client.prop[f"c{name.hex}"]
    with coll.watch(max_await_time_ms=20) as stream:
        expected = [kind for kind in (apply(coll, op) for op in ops) if kind is not None]
        events = read_all(stream)
    assert [e["operationType"] for e in events] == expected
    tokens = [e["_id"]["_data"] for e in events]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    if events:
        k = min(cut, len(events) - 1)
        with coll.watch(resume_after=events[k]["_id"], max_await_time_ms=20) as resumed:
            assert [e["_id"] for e in read_all(resumed)] == [e["_id"] for e in events[k + 1 :]]
