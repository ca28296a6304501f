"""Change event → drafts: keys, deletes, key changes, skips and cluster times."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from bson import ObjectId
from bson.timestamp import Timestamp

from shared.documents import key_of
from watcher.reporting import WatcherStats
from watcher.translating import Draft, KeyMap, Translator, cluster_seconds


def translator(key_field: str = "source_id") -> tuple[Translator, WatcherStats]:
    stats = WatcherStats(instance_id="w", started_at=0.0)
    return Translator(key_field=key_field, keys=KeyMap(), stats=stats), stats


def change(op: str, doc_id: Any, doc: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "_id": {"_data": "00"},
        "operationType": op,
        "documentKey": {"_id": doc_id},
        "clusterTime": Timestamp(1_700_000_000, 7),
        **extra,
    }
    if op != "delete":
        out["fullDocument"] = doc
    return out


def test_insert_update_replace_become_upserts_with_the_post_image() -> None:
    """insert/update/replace publish ``upsert`` with the post-image, op and exact clusterTime."""
    t, _ = translator()
    oid = ObjectId()
    for op in ("insert", "update", "replace"):
        doc = {"_id": oid, "source_id": "s1", "n": op}
        [draft] = t.drafts(change(op, oid, doc))
        assert draft == Draft(
            kind="upsert",
            op=op,
            key="s1",
            doc=doc,
            cluster_time=1_700_000_000.000007,
            ct=(1_700_000_000, 7),
            doc_id=oid,
        )


def test_delete_names_the_key_learned_from_an_earlier_post_image() -> None:
    """A delete event (only ``_id``) is published with the key seen for that ``_id``."""
    t, _ = translator()
    t.drafts(change("insert", 1, {"_id": 1, "source_id": "s1"}))
    [draft] = t.drafts(change("delete", 1))
    assert (draft.kind, draft.key, draft.doc) == ("delete", "s1", None)
    assert len(t.keys) == 0


def test_delete_of_an_unknown_key_names_the_id_not_nothing() -> None:
    """If no post-image or scan ever named the key, the delete names the _id for replicas."""
    t, _ = translator()
    oid = ObjectId()
    [draft] = t.drafts(change("delete", oid))
    assert (draft.kind, draft.key, draft.doc_id) == ("delete", None, oid)


def test_update_whose_lookup_found_nothing_is_a_delete() -> None:
    """An update whose ``fullDocument`` is null (deleted since) publishes ``delete``."""
    t, _ = translator()
    t.drafts(change("insert", 1, {"_id": 1, "source_id": "s1"}))
    [draft] = t.drafts(change("update", 1, None))
    assert (draft.kind, draft.key) == ("delete", "s1")
    [again] = t.drafts(change("delete", 1))
    assert (again.kind, again.key) == ("delete", "s1")


def test_a_changed_key_deletes_the_old_key_first() -> None:
    """When an update moves a document to another key, the old key is deleted first."""
    t, _ = translator()
    t.drafts(change("insert", 1, {"_id": 1, "source_id": "old"}))
    drafts = t.drafts(change("update", 1, {"_id": 1, "source_id": "new"}))
    assert [(d.kind, d.key) for d in drafts] == [("delete", "old"), ("upsert", "new")]
    assert [d.doc_id for d in drafts] == [1, 1]  # replicas delete the document, not the key


def test_a_document_without_a_string_key_is_skipped_with_a_log_line_and_a_count() -> None:
    """A post-image without a usable key is not upserted (logged, counted) but deleted by _id."""
    t, stats = translator()
    with structlog.testing.capture_logs() as logs:
        [draft] = t.drafts(change("insert", 1, {"_id": 1, "source_id": 5}))
    assert (draft.kind, draft.key, draft.doc_id) == ("delete", None, 1)
    assert stats.skipped["no_key"] == 1
    assert [e["reason"] for e in logs if e["event"] == "change event not published"] == ["no_key"]


def test_key_field_id_needs_no_map() -> None:
    """With ``SCC_KEY_FIELD=_id`` a delete names its key straight from ``documentKey``."""
    t, _ = translator("_id")
    [draft] = t.drafts(change("delete", "abc"))
    assert (draft.kind, draft.key) == ("delete", "abc")


def test_key_of_reads_dotted_paths_and_refuses_non_strings() -> None:
    """``key_of`` follows dotted paths and accepts only non-empty strings."""
    assert key_of({"a": {"b": "k"}}, "a.b") == "k"
    assert key_of({"a": {"b": 1}}, "a.b") is None
    assert key_of({"a": ""}, "a") is None


def test_key_map_accepts_document_ids() -> None:
    """``_id`` values that are documents (unhashable in Python) work as map keys."""
    keys = KeyMap()
    keys.learn({"tenant": "t", "n": 1}, "k")
    assert keys.get({"tenant": "t", "n": 1}) == "k"
    assert keys.forget({"tenant": "t", "n": 1}) == "k"


def test_cluster_seconds_is_time_plus_increment_in_microseconds() -> None:
    """``cluster_time`` is ``Timestamp.time + inc × 1e-6``; non-timestamps give None."""
    assert cluster_seconds(Timestamp(10, 250_000)) == pytest.approx(10.25)
    assert cluster_seconds(None) is None
