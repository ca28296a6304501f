"""RedisEventSink group commit on a real redis-server: one round trip, per-entry outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.errors import EventSinkUnavailable
from service.event_sinks import MAX_IN_FLIGHT, RedisEventSink
from shared.keys import Keys

pytestmark = pytest.mark.integration
KEYS = Keys("sinktest")


class CountingRedis:
    """Delegates to a real client and counts pipelines (one pipeline = one round trip)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.pipelines = 0

    def pipeline(self, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(**kwargs)

    async def script_load(self, script: str) -> Any:
        return await self.client.script_load(script)


class SlowPipelines(CountingRedis):
    """:class:`CountingRedis` whose round trips take ``delay_s`` longer; it records the
    most that were out at once."""

    def __init__(self, client: aioredis.Redis, delay_s: float) -> None:
        super().__init__(client)
        self.delay_s = delay_s
        self.in_flight = self.most_in_flight = 0

    def pipeline(self, **kwargs: Any) -> Any:
        return _SlowPipeline(self, super().pipeline(**kwargs))


class _SlowPipeline:
    def __init__(self, owner: SlowPipelines, pipe: Any) -> None:
        self.owner, self.pipe = owner, pipe

    async def __aenter__(self) -> _SlowPipeline:
        await self.pipe.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipe.__aexit__(*exc)

    def execute_command(self, *args: Any, **kwargs: Any) -> _SlowPipeline:
        self.pipe.execute_command(*args, **kwargs)
        return self

    async def execute(self, **kwargs: Any) -> Any:
        owner = self.owner
        owner.in_flight += 1
        owner.most_in_flight = max(owner.most_in_flight, owner.in_flight)
        try:
            await asyncio.sleep(owner.delay_s)
            return await self.pipe.execute(**kwargs)
        finally:
            owner.in_flight -= 1


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


def record(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "path": f"p/{i}", "event": {"n": i}}


async def test_concurrent_writes_share_one_round_trip_and_keep_their_order(
    client: aioredis.Redis,
) -> None:
    """Twenty writes issued together go out in one pipeline, stored in the order issued."""
    counting = CountingRedis(client)
    sink = RedisEventSink(counting, KEYS)  # type: ignore[arg-type]
    await asyncio.gather(*(sink.accepted(f"s{i}", record(i)) for i in range(20)))
    assert counting.pipelines == 1
    entries = await client.xrange(KEYS.events_accepted)
    assert [e[1][b"event_id"] for e in entries] == [f"e{i}".encode() for i in range(20)]
    assert entries[3][1][b"source_id"] == b"s3"


async def test_one_failing_entry_fails_alone(client: aioredis.Redis) -> None:
    """An XADD refused by Redis fails only its own caller; the others are stored."""
    await client.set(KEYS.events_dlq, "not a stream")  # XADD to it answers WRONGTYPE
    sink = RedisEventSink(client, KEYS)
    outcomes = await asyncio.gather(
        sink.accepted("a", record(1)),
        sink.dead_letter("no_matching_config", record(2)),
        sink.accepted("b", record(3)),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], EventSinkUnavailable)
    assert await client.xlen(KEYS.events_accepted) == 2


async def test_redis_down_fails_every_waiting_writer(
    client: aioredis.Redis, redis_server: Any
) -> None:
    """With Redis stopped every concurrent writer gets EventSinkUnavailable, none hangs."""
    sink = RedisEventSink(client, KEYS)
    redis_server.stop()
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(sink.accepted(f"s{i}", record(i)) for i in range(5)), return_exceptions=True
        ),
        timeout=10,
    )
    assert all(isinstance(o, EventSinkUnavailable) for o in outcomes)


async def test_cancelled_writer_strands_nobody(client: aioredis.Redis) -> None:
    """If the task flushing the batch is cancelled, the other writers fail instead of hanging."""
    sink = RedisEventSink(client, KEYS)
    flusher = asyncio.create_task(sink.accepted("first", record(0)))
    others = [asyncio.create_task(sink.accepted(f"s{i}", record(i))) for i in range(1, 4)]
    await asyncio.sleep(0)  # everyone has queued; the flusher waits one tick
    flusher.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), timeout=5)
    assert all(o is None or isinstance(o, EventSinkUnavailable) for o in outcomes)
    assert any(isinstance(o, EventSinkUnavailable) for o in outcomes)
    with pytest.raises(asyncio.CancelledError):
        await flusher
    await sink.accepted("later", record(9))  # the sink still works afterwards
    assert await client.xlen(KEYS.events_accepted) >= 1


async def test_a_writer_returns_with_its_own_batch_while_others_keep_writing(
    client: aioredis.Redis,
) -> None:
    """Under a steady stream of writes each caller waits for its own batch only: the one
    that sent a batch does not stay to send everyone else's, and the next batch is out
    while the first is (at most MAX_IN_FLIGHT at once)."""
    slow = SlowPipelines(client, delay_s=0.05)
    sink = RedisEventSink(slow, KEYS)  # type: ignore[arg-type]
    stop = asyncio.Event()

    async def steady() -> int:
        n = 0
        writes = []
        while not stop.is_set():
            writes.append(asyncio.create_task(sink.accepted(f"s{n}", record(100 + n))))
            n += 1
            await asyncio.sleep(0.01)
        await asyncio.gather(*writes)
        return n

    first = asyncio.create_task(sink.accepted("first", record(0)))  # it sends the first batch
    others = asyncio.create_task(steady())
    try:
        await asyncio.wait({first}, timeout=1.0)
        assert first.done(), "the writer of the first batch stayed to send everyone else's"
    finally:
        stop.set()
    n = await others
    assert first.result() is None
    assert slow.most_in_flight == MAX_IN_FLIGHT
    assert await client.xlen(KEYS.events_accepted) == n + 1
