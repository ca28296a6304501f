"""Change event → message translation, and the fenced, stamped, size-capped publisher."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog
from bson import ObjectId
from bson.timestamp import Timestamp

from shared.messages import decode
from tests.unit.watcher.fakes import FakeChannel, FakeRedis
from watcher.electing import Leadership, Term
from watcher.errors import FencedOut, NotLeader
from watcher.publishing import (
    Draft,
    KeyMap,
    Publisher,
    Translator,
    cluster_seconds,
    key_of,
    run_heartbeats,
)
from watcher.reporting import WatcherStats
from watcher.timing import SYSTEM_CLOCK


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
    """insert/update/replace publish ``upsert`` carrying the post-image and the op."""
    t, _ = translator()
    oid = ObjectId()
    for op in ("insert", "update", "replace"):
        doc = {"_id": oid, "source_id": "s1", "n": op}
        [draft] = t.drafts(change(op, oid, doc))
        assert draft == Draft(
            kind="upsert", op=op, key="s1", doc=doc, cluster_time=1_700_000_000.000007
        )


def test_delete_names_the_key_learned_from_an_earlier_post_image() -> None:
    """A delete event (only ``_id``) is published with the key seen for that ``_id``."""
    t, _ = translator()
    t.drafts(change("insert", 1, {"_id": 1, "source_id": "s1"}))
    [draft] = t.drafts(change("delete", 1))
    assert (draft.kind, draft.key, draft.doc) == ("delete", "s1", None)
    assert len(t.keys) == 0


def test_delete_of_an_unknown_key_publishes_resync_not_nothing() -> None:
    """If no post-image or scan ever named the key, the watcher asks for a resync."""
    t, _ = translator()
    [draft] = t.drafts(change("delete", 99))
    assert (draft.kind, draft.reason) == ("resync", "unknown_delete_key")


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


def test_a_document_without_a_string_key_is_skipped_with_a_log_line_and_a_count() -> None:
    """A post-image without a usable key field publishes nothing, logs once and counts."""
    t, stats = translator()
    with structlog.testing.capture_logs() as logs:
        assert t.drafts(change("insert", 1, {"_id": 1, "source_id": 5})) == []
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


async def leading(redis: FakeRedis, name: str = "w") -> tuple[Leadership, Term]:
    redis.leader, redis.epoch, redis.expires_at = name, 4, time.monotonic() + 60
    leadership = Leadership()
    term = Term(epoch=4, acquired_at=time.monotonic())
    leadership.grant(term, time.monotonic() + 60)
    return leadership, term


def make_publisher(
    redis: FakeRedis, leadership: Leadership, **kwargs: Any
) -> tuple[Publisher, WatcherStats]:
    stats = WatcherStats(instance_id="w", started_at=0.0)
    publisher = Publisher(
        channel=FakeChannel(redis, "w"),
        leadership=leadership,
        stats=stats,
        clock=SYSTEM_CLOCK,
        **kwargs,
    )
    return publisher, stats


async def test_publish_stamps_epoch_time_and_a_gap_free_seq() -> None:
    """Messages carry the term's epoch, ``published_at`` and consecutive seqs."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    for key in ("a", "b"):
        await publisher.send(Draft(kind="upsert", op="insert", key=key, doc={"x": 1}), term)
    first, second = redis.messages()
    assert (first.seq, second.seq, first.epoch) == (1, 2, 4)
    assert abs(first.published_at - time.time()) < 60
    assert stats.events["insert"] == 2


async def test_heartbeat_repeats_the_current_seq() -> None:
    """A heartbeat carries the current seq without taking a new one."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership)
    await publisher.send(Draft(kind="upsert", op="insert", key="a", doc={}), term)
    assert await publisher.heartbeat(term) == 1
    assert [(m.kind, m.seq) for m in redis.messages()] == [("upsert", 1), ("heartbeat", 1)]


async def test_an_oversized_document_goes_key_only_with_refetch() -> None:
    """A document whose message would exceed the limit is sent as key-only ``refetch``."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership, max_message_bytes=2048)
    await publisher.send(Draft(kind="upsert", op="update", key="big", doc={"x": "y" * 4096}), term)
    [message] = redis.messages()
    assert (message.key, message.doc, message.refetch) == ("big", None, True)
    assert stats.oversized == 1


async def test_messages_are_signed_when_a_key_is_configured() -> None:
    """With an HMAC key the message verifies with that key (and fails without the sig)."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership, hmac_key=b"k" * 32)
    await publisher.send(Draft(kind="resync", op=None, reason="no_token"), term)
    assert decode(redis.published[0], hmac_key=b"k" * 32).reason == "no_token"


async def test_a_fenced_out_publish_raises_and_sends_nothing() -> None:
    """When the lease names someone else, publish raises FencedOut and nothing goes out."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    redis.leader = "other"
    with pytest.raises(FencedOut):
        await publisher.send(Draft(kind="upsert", op="insert", key="a", doc={}), term)
    assert redis.published == [] and redis.seq == 0 and stats.fenced == 1


async def test_past_the_local_deadline_nothing_is_even_attempted() -> None:
    """Once the term is revoked locally, publish refuses before touching Redis."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership)
    leadership.revoke(term)
    with pytest.raises(NotLeader):
        await publisher.send(Draft(kind="upsert", op="insert", key="a", doc={}), term)
    with pytest.raises(NotLeader):
        await publisher.heartbeat(term)
    assert redis.published == []


async def test_heartbeats_are_withheld_while_the_stream_is_not_live() -> None:
    """No heartbeat goes out while ``healthy()`` is false; they resume once it is true."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    live = {"ok": False}
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_heartbeats(
            publisher,
            term,
            stop,
            interval_ms=10,
            stats=stats,
            clock=SYSTEM_CLOCK,
            healthy=lambda: live["ok"],
        ),
        name="test.heartbeats",
    )
    await asyncio.sleep(0.1)
    assert redis.published == []
    live["ok"] = True
    for _ in range(300):
        if redis.published:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert {m.kind for m in redis.messages()} == {"heartbeat"}


async def test_a_fenced_heartbeat_ends_the_heartbeat_loop() -> None:
    """When the fence refuses a heartbeat, the loop raises FencedOut (the session steps down)."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    redis.leader = "other"
    with pytest.raises(FencedOut):
        await run_heartbeats(
            publisher, term, asyncio.Event(), interval_ms=10, stats=stats, clock=SYSTEM_CLOCK
        )
