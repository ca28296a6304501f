"""Poison documents: an event the watcher cannot decode or encode is named, counted, sent key-only.

Never a crash, never a silent skip: an undecodable event becomes a delete by ``_id`` (the
replicas, which decode with the same codec, drop it and read MongoDB on the next lookup);
a document that decodes but cannot be encoded into a message goes key-only with
``refetch``; an undecodable event naming no document is a ``resync``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import bson
import fakeredis
import httpx
from bson import Timestamp
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from bson.raw_bson import RawBSONDocument

from shared.clients import DOCUMENT_CODEC
from shared.keys import Keys
from shared.messages import decode
from shared.status import WatcherStatus
from tests.unit.watcher.fakes import FakeRedis, FakeSource, token
from tests.unit.watcher.test_publishing import leading, make_publisher
from tests.unit.watcher.test_running import STEADY_TTL_MS, eventually, make_watcher, running
from tests.unit.watcher.test_watching import following, rig
from watcher.mongo_source import MongoStream, decode_change
from watcher.reporting import StatusWriter, WatcherStats
from watcher.timing import SYSTEM_CLOCK
from watcher.translating import UNDECODABLE, Draft, KeyMap, Translator

RAW = DOCUMENT_CODEC.with_options(document_class=RawBSONDocument)
#: Legal BSON that PyMongo cannot decode with uuidRepresentation=standard.
BAD_UUID = Binary(b"abc", 4)


def raw_event(doc_id: Any, full: dict[str, Any] | None, op: str = "update") -> RawBSONDocument:
    """A change event as the server sends it, read with a raw document class."""
    event: dict[str, Any] = {
        "_id": {"_data": "82AB"},
        "operationType": op,
        "clusterTime": Timestamp(1_700_000_000, 3),
        "documentKey": {"_id": doc_id},
    }
    if full is not None:
        event["fullDocument"] = full
    return RawBSONDocument(bson.encode(event), RAW)


def test_an_event_that_decodes_is_decoded_with_the_client_codec() -> None:
    """A year-10000 date is no poison: it decodes as DatetimeMS, the event in full."""
    change = decode_change(
        raw_event(7, {"_id": 7, "when": DatetimeMS(253_402_300_800_000)}), DOCUMENT_CODEC
    )
    assert UNDECODABLE not in change
    assert change["fullDocument"]["when"] == DatetimeMS(253_402_300_800_000)


def test_an_undecodable_event_keeps_what_names_its_document() -> None:
    """A post-image that does not decode leaves op, cluster time and documentKey, and the error."""
    change = decode_change(raw_event(7, {"_id": 7, "blob": BAD_UUID}), DOCUMENT_CODEC)
    assert "uuid" in change[UNDECODABLE]
    assert change["operationType"] == "update"
    assert change["documentKey"] == {"_id": 7}
    assert change["clusterTime"] == Timestamp(1_700_000_000, 3)
    assert "fullDocument" not in change


def test_trouble_only_in_parts_the_watcher_does_not_use_is_no_poison() -> None:
    """A bad value in updateDescription alone: the event is published from its post-image."""
    event = {
        "_id": {"_data": "82AB"},
        "operationType": "update",
        "clusterTime": Timestamp(1_700_000_000, 3),
        "documentKey": {"_id": 7},
        "updateDescription": {"updatedFields": {"blob": BAD_UUID}, "removedFields": []},
        "fullDocument": {"_id": 7, "source_id": "k"},
    }
    change = decode_change(RawBSONDocument(bson.encode(event), RAW), DOCUMENT_CODEC)
    assert UNDECODABLE not in change
    assert change["fullDocument"] == {"_id": 7, "source_id": "k"}
    assert change["documentKey"] == {"_id": 7} and change["operationType"] == "update"


class RawStream:
    """PyMongo's AsyncChangeStream as seen through a raw collection: raw events and token."""

    def __init__(self, events: list[RawBSONDocument]) -> None:
        self.events = events
        self.resume_token: Mapping[str, Any] | None = None

    async def try_next(self) -> RawBSONDocument | None:
        if not self.events:
            return None
        event = self.events.pop(0)
        self.resume_token = event["_id"]
        return event

    async def close(self) -> None:
        pass


async def test_the_mongo_stream_returns_the_poison_event_instead_of_raising() -> None:
    """try_next hands back a marked event (no exception) and a plain-document resume token."""
    stream = MongoStream(
        RawStream([raw_event(1, {"_id": 1, "blob": BAD_UUID}), raw_event(2, {"_id": 2})]),  # type: ignore[arg-type]
        DOCUMENT_CODEC,
    )
    first = await stream.try_next()
    assert first is not None and UNDECODABLE in first
    assert stream.resume_token == {"_data": "82AB"} and type(stream.resume_token) is dict
    second = await stream.try_next()
    assert second is not None and second["fullDocument"] == {"_id": 2}


def poison(doc_id: Any = None, op: str = "update") -> dict[str, Any]:
    """The decoded form of an undecodable event (what the mongo source yields)."""
    change: dict[str, Any] = {UNDECODABLE: "InvalidBSON: bad", "operationType": op}
    if doc_id is not None:
        change["documentKey"] = {"_id": doc_id}
    return change


def test_a_poison_event_is_a_counted_delete_by_id_naming_the_key_when_known() -> None:
    """Known key: delete(key, _id); unknown key: delete by _id alone; both counted with the _id."""
    stats = WatcherStats(instance_id="w", started_at=0.0)
    keys = KeyMap()
    keys.learn(5, "known")
    translator = Translator(key_field="source_id", keys=keys, stats=stats)
    [known] = translator.drafts(poison(5))
    [unknown] = translator.drafts(poison(6))
    assert (known.kind, known.key, known.doc_id) == ("delete", "known", 5)
    assert (unknown.kind, unknown.key, unknown.doc_id) == ("delete", None, 6)
    assert stats.poison["undecodable"] == 2
    assert "_id=6" in stats.last_poison
    assert keys.get(5) == "known"  # its key stays known for its next change


def test_a_poison_event_naming_no_document_is_a_resync() -> None:
    """Without a documentKey nothing can be named: replicas reload (reason poison_event)."""
    stats = WatcherStats(instance_id="w", started_at=0.0)
    translator = Translator(key_field="source_id", keys=KeyMap(), stats=stats)
    [draft] = translator.drafts(poison())
    assert (draft.kind, draft.reason) == ("resync", "poison_event")
    assert stats.poison["undecodable"] == 1


async def test_the_follower_publishes_the_poison_and_keeps_following() -> None:
    """A poison event between two good ones: all three published, one stream, no restart."""
    r = rig()
    r.tokens.set(token(0))
    r.source.insert(1, "a")
    r.source._event("update", **{k: v for k, v in poison(1).items() if k != "operationType"})
    r.source.insert(2, "b")
    async with following(r):
        await eventually(lambda: ("upsert", "b") in r.keys_published())
    assert r.keys_published() == [("upsert", "a"), ("delete", "a"), ("upsert", "b")]
    assert r.messages()[1].doc_id == 1
    assert r.source.opened == [0] and r.stats.poison["undecodable"] == 1


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"n": doc}
    return doc


async def test_a_document_too_deep_to_encode_goes_key_only_with_refetch() -> None:
    """Nesting beyond the JSON encoder's limit: an upsert refetch by key, counted, signed or not."""
    for hmac_key in (None, b"k" * 32):
        redis = FakeRedis()
        leadership, term = await leading(redis)
        publisher, stats = make_publisher(redis, leadership, hmac_key=hmac_key)
        doc = {"_id": 9, "source_id": "deep", **nested(300)}
        await publisher.send(Draft("upsert", "insert", key="deep", doc=doc, doc_id=9), term)
        [raw] = redis.published
        message = decode(raw, hmac_key=hmac_key)
        assert (message.kind, message.key, message.refetch) == ("upsert", "deep", True)
        assert message.doc is None
        assert message.doc_id == 9
        assert stats.poison["unencodable"] == 1 and "_id=9" in stats.last_poison


async def test_a_delete_whose_id_cannot_be_encoded_goes_by_key() -> None:
    """Even an _id the encoder refuses does not raise: the delete names the key alone."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    await publisher.send(Draft("delete", "delete", key="k", doc_id=nested(300)), term)
    [message] = redis.messages()
    assert (message.kind, message.key, message.doc_id) == ("delete", "k", None)
    assert stats.poison["unencodable"] == 1


async def test_metrics_and_the_status_hash_show_the_poison_count() -> None:
    """/metrics has scc_watcher_poison_documents_total by reason; the status hash the count."""
    redis, source = FakeRedis(), FakeSource()
    watcher = make_watcher(redis, source, leader_ttl_ms=STEADY_TTL_MS)
    async with running(watcher):
        await eventually(lambda: watcher.stats.stream_open)
        source._event("insert", **{k: v for k, v in poison(3).items() if k != "operationType"})
        await eventually(lambda: watcher.stats.poison["undecodable"] == 1)
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"http://127.0.0.1:{watcher.http.port}/metrics")).text
    assert 'scc_watcher_poison_documents_total{reason="undecodable"} 1.0' in body
    assert 'scc_watcher_poison_documents_total{reason="unencodable"} 0.0' in body
    store = fakeredis.FakeAsyncRedis()
    keys = Keys("t")
    writer = StatusWriter(
        redis=store,
        keys=keys,
        stats=watcher.stats,
        leadership=watcher.leadership,
        interval_ms=100,
        clock=SYSTEM_CLOCK,
    )
    assert await writer.write_once()
    status = WatcherStatus.from_hash(await store.hgetall(keys.watcher("w1")))
    assert status.poison_documents == 1 and "_id=3" in status.last_poison
    assert time.time() - (status.updated_at or 0) < 60
