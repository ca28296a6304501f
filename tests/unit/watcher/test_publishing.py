"""The publisher: fenced, stamped, numbered, size-capped, signed; heartbeats."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from shared.batches import decode_batch
from shared.errors import MessageError
from shared.messages import decode
from tests.unit.watcher.fakes import FakeChannel, FakeRedis
from watcher.electing import Leadership, Term
from watcher.errors import FencedOut, NotLeader
from watcher.publishing import Publisher, run_heartbeats
from watcher.reporting import WatcherStats
from watcher.timing import SYSTEM_CLOCK
from watcher.translating import Draft


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


async def test_messages_carry_the_term_id_and_exact_cluster_time() -> None:
    """Every change and heartbeat names its term; changes carry ``ct``, heartbeats repeat it."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership)
    draft = Draft(kind="upsert", op="insert", key="a", doc={}, ct=(1_700_000_000, 3))
    await publisher.send(draft, term)
    await publisher.heartbeat(term)
    change, beat = redis.messages()
    assert change.term == beat.term == term.term_id and len(term.term_id) == 16
    assert change.ct == beat.ct == (1_700_000_000, 3)


async def test_a_counter_redis_lost_is_put_back_to_the_terms_last_seq() -> None:
    """Redis forgets the last INCRs: the next publish continues the term's own sequence."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership)
    for key in "abcde":
        await publisher.send(Draft(kind="upsert", op="insert", key=key, doc={}), term)
    redis.seq = 1  # a failover to a replica that lagged
    assert await publisher.heartbeat(term) == 5
    assert await publisher.send(Draft(kind="upsert", op="insert", key="f", doc={}), term) == 6


async def test_a_heartbeat_says_how_far_the_published_state_trails() -> None:
    """``behind`` is the time since every committed change was last known published."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership)
    await publisher.heartbeat(term)
    stats.caught_up(time.time() - 12.0)  # replaying changes 12 s old
    await publisher.heartbeat(term)
    stats.caught_up(time.time())  # an empty getMore: caught up
    await publisher.heartbeat(term)
    unknown, replaying, current = redis.messages()
    assert unknown.behind is None
    assert replaying.behind is not None and 11.0 < replaying.behind < 60.0
    assert current.behind is not None and current.behind < 1.0


def _drafts(n: int, *, size: int = 10) -> list[Draft]:
    return [
        Draft(
            kind="upsert",
            op="insert",
            key=f"k{i}",
            doc={"_id": i, "x": "y" * size},
            doc_id=i,
            ct=(100, i),
            cluster_time=100 + i / 1e6,
        )
        for i in range(n)
    ]


async def test_a_batch_goes_out_as_one_message_with_consecutive_seqs() -> None:
    """Drafts of one change-stream batch take one publish and consecutive seqs."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership, batch_max_changes=100)
    await publisher.send(Draft(kind="upsert", op="insert", key="first", doc={}), term)
    seqs = await publisher.send_batch(_drafts(5), term)
    assert seqs == [2, 3, 4, 5, 6]
    assert len(redis.published) == 2
    changes = decode_batch(redis.published[1]).changes
    assert [(c.seq, c.key, c.ct) for c in changes] == [(2 + i, f"k{i}", (100, i)) for i in range(5)]
    assert (stats.batches, stats.events["insert"], publisher.last_seq) == (1, 6, 6)
    assert publisher.last_ct == (100, 4)


async def test_a_batch_is_split_by_count_and_by_bytes_never_dropped() -> None:
    """Bounds split a batch into several messages; every draft is published, in order."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership, batch_max_changes=3)
    await publisher.send_batch(_drafts(7), term)
    assert [len(decode_batch(raw)) for raw in redis.published] == [3, 3, 1]
    redis2 = FakeRedis()
    leadership2, term2 = await leading(redis2)
    publisher2, _ = make_publisher(redis2, leadership2, batch_max_changes=100, batch_max_bytes=4096)
    await publisher2.send_batch(_drafts(20, size=600), term2)
    sizes = [len(raw) for raw in redis2.published]
    assert all(size <= 4096 for size in sizes) and len(sizes) > 3
    assert [m.seq for m in redis2.messages()] == list(range(1, 21))


async def test_a_lone_change_and_a_resync_go_out_as_single_messages() -> None:
    """A batch of one is a plain ``v: 1`` message; a resync never travels in a batch."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership, batch_max_changes=100)
    await publisher.send_batch(_drafts(1), term)
    drafts = _drafts(4)
    drafts.insert(2, Draft(kind="resync", op=None, reason="poison_event"))
    await publisher.send_batch(drafts, term)
    versions = [orjson.loads(raw)["v"] for raw in redis.published]
    assert versions == [1, 2, 1, 2]
    assert decode(redis.published[0]).seq == 1
    assert [m.kind for m in redis.messages()] == ["upsert"] * 3 + ["resync"] + ["upsert"] * 2
    assert [m.seq for m in redis.messages()] == list(range(1, 7))


async def test_an_oversized_or_poison_document_in_a_batch_goes_key_only() -> None:
    """The size cap and the poison fallback apply to each change of a batch."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(
        redis, leadership, batch_max_changes=100, max_message_bytes=2048
    )
    drafts = _drafts(3)
    drafts[1] = Draft(kind="upsert", op="update", key="big", doc={"x": "y" * 4096}, doc_id=1)
    drafts.append(Draft(kind="upsert", op="update", key="bad", doc={"x": 2**70}, doc_id=3))
    await publisher.send_batch(drafts, term)
    [raw] = redis.published
    changes = decode_batch(raw).changes
    assert [(c.key, c.refetch, c.doc is None) for c in changes[1:]] == [
        ("big", True, True),
        ("k2", False, False),
        ("bad", True, True),
    ]
    assert stats.oversized == 1 and stats.poison["unencodable"] == 1


async def test_a_signed_batch_verifies_as_a_whole() -> None:
    """With an HMAC key a batch carries one signature that replicas verify."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, _ = make_publisher(redis, leadership, batch_max_changes=10, hmac_key=b"k" * 32)
    await publisher.send_batch(_drafts(3), term)
    [raw] = redis.published
    assert len(decode_batch(raw, hmac_key=b"k" * 32)) == 3
    with pytest.raises(MessageError):
        decode_batch(raw.replace(b'"k1"', b'"k7"'), hmac_key=b"k" * 32)


async def test_a_fenced_out_batch_publishes_nothing() -> None:
    """A batch from a deposed leader is refused whole, and counted."""
    redis = FakeRedis()
    leadership, term = await leading(redis)
    publisher, stats = make_publisher(redis, leadership, batch_max_changes=10)
    redis.epoch = 5
    with pytest.raises(FencedOut):
        await publisher.send_batch(_drafts(3), term)
    assert (redis.published, stats.fenced, redis.seq) == ([], 1, 0)
