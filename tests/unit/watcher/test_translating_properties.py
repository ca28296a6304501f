"""The watcher's decision for each change event, over generated event histories.

Whatever the events -- inserts, updates, replaces, deletes, post-images missing or not a
document, keys missing or not strings, poison events with or without a ``documentKey`` --
the translator never raises and never stays silent: each event yields drafts that name
its ``_id``, or a counted skip, and a poison event yields exactly one delete by ``_id``
(or a ``resync`` when it names no document).
"""

from __future__ import annotations

from typing import Any

from bson import Int64
from hypothesis import given
from hypothesis import strategies as st

from shared.documents import id_token
from watcher.reporting import WatcherStats
from watcher.translating import UNDECODABLE, KeyMap, Translator

ids = st.integers(0, 5) | st.integers(0, 5).map(Int64) | st.integers(0, 5).map(float)
keys = st.sampled_from(["a", "b", "c"]) | st.just("") | st.integers(0, 3) | st.none()


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["insert", "update", "replace", "delete"]))
    doc_id = draw(ids)
    event: dict[str, Any] = {"operationType": op}
    if draw(st.integers(0, 9)) > 0:
        event["documentKey"] = {"_id": doc_id}
    if draw(st.booleans()) and draw(st.booleans()):
        event[UNDECODABLE] = "InvalidBSON: generated"
        return event
    if op != "delete":
        shape = draw(st.sampled_from(["doc", "doc", "doc", "none", "junk"]))
        if shape == "doc":
            full: dict[str, Any] = {"_id": doc_id}
            key = draw(keys)
            if key is not None:
                full["source_id"] = key
            event["fullDocument"] = full
        elif shape == "junk":
            event["fullDocument"] = draw(st.sampled_from([3, "x", [1]]))
    return event


@given(st.lists(events(), max_size=30))
def test_every_event_is_published_or_counted_and_poison_is_named(history: list[Any]) -> None:
    """No event raises or vanishes; drafts carry the event's _id; poison is one delete by _id."""
    stats = WatcherStats(instance_id="w", started_at=0.0)
    translator = Translator(key_field="source_id", keys=KeyMap(), stats=stats)
    for event in history:
        skipped_before = sum(stats.skipped.values())
        poison_before = stats.poison["undecodable"]
        drafts = translator.drafts(event)
        doc_key = event.get("documentKey")
        if UNDECODABLE in event:
            assert stats.poison["undecodable"] == poison_before + 1
            [draft] = drafts
            if doc_key is None:
                assert (draft.kind, draft.reason) == ("resync", "poison_event")
            else:
                assert draft.kind == "delete"
                assert id_token(draft.doc_id) == id_token(doc_key["_id"])
            continue
        assert drafts or sum(stats.skipped.values()) > skipped_before
        for draft in drafts:
            assert draft.kind in ("upsert", "delete")
            assert doc_key is not None and id_token(draft.doc_id) == id_token(doc_key["_id"])
            if draft.kind == "upsert":
                assert isinstance(draft.key, str) and draft.key and draft.doc is not None
