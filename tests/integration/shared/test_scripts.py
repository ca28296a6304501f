"""The fenced Lua scripts against a real redis-server: leases, epochs, gap-free seq, fencing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared import scripts
from shared.batches import decode_batch, encode_batch_body, encode_change
from shared.keys import Keys
from shared.messages import Message, decode, encode_body

pytestmark = pytest.mark.integration
KEYS = Keys("t")


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _publish(r: aioredis.Redis, who: str, epoch: int, incr: bool = True) -> object:
    body = encode_body(Message(kind="resync", seq=0, epoch=epoch, published_at=1.0))
    script = r.register_script(scripts.PUBLISH)
    return await script(
        keys=[KEYS.leader, KEYS.epoch, KEYS.seq],
        args=[who, epoch, KEYS.invalidations, body, "1" if incr else "0"],
    )


async def test_acquire_is_exclusive_and_epochs_increase(r: aioredis.Redis) -> None:
    """Only one instance gets the lease; each acquisition takes a higher epoch."""
    acquire = r.register_script(scripts.ACQUIRE)
    first = await acquire(keys=[KEYS.leader, KEYS.epoch], args=["a", 5000])
    assert first == 1
    assert await acquire(keys=[KEYS.leader, KEYS.epoch], args=["b", 5000]) == 0
    release = r.register_script(scripts.RELEASE)
    assert await release(keys=[KEYS.leader, KEYS.epoch], args=["b", 1]) == scripts.FENCED_OUT
    assert await release(keys=[KEYS.leader, KEYS.epoch], args=["a", 1]) == 1
    assert await acquire(keys=[KEYS.leader, KEYS.epoch], args=["b", 5000]) == 2


async def test_publish_is_gap_free_and_heartbeat_does_not_increment(r: aioredis.Redis) -> None:
    """Publishes take seq 1, 2, 3; a heartbeat repeats the current seq; subscribers see both."""
    await r.set(KEYS.leader, "a")
    await r.set(KEYS.epoch, 4)
    pubsub = r.pubsub()
    await pubsub.subscribe(KEYS.invalidations)
    await pubsub.get_message(timeout=1)
    results = [await _publish(r, "a", 4) for _ in range(3)]
    assert [res[0] for res in results] == [1, 2, 3]  # type: ignore[index]
    assert (await _publish(r, "a", 4, incr=False))[0] == 3  # type: ignore[index]
    seen = []
    while len(seen) < 4:
        m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if m:
            seen.append(decode(m["data"]))
    assert [(x.seq, x.epoch) for x in seen] == [(1, 4), (2, 4), (3, 4), (3, 4)]
    await pubsub.aclose()


async def test_fenced_out_writer_changes_nothing(r: aioredis.Redis) -> None:
    """A caller that lost the lease, or holds an old epoch, can neither publish nor save."""
    await r.set(KEYS.leader, "b")
    await r.set(KEYS.epoch, 7)
    await r.set(KEYS.seq, 10)
    assert await _publish(r, "a", 7) == scripts.FENCED_OUT
    assert await _publish(r, "b", 6) == scripts.FENCED_OUT
    save = r.register_script(scripts.SAVE_TOKEN)
    refused = await save(
        keys=[KEYS.leader, KEYS.epoch, KEYS.resume], args=["a", 7, "{}", "", "1.0"]
    )
    assert refused == scripts.FENCED_OUT
    assert await r.get(KEYS.seq) == b"10"
    assert await r.exists(KEYS.resume) == 0
    ok = await save(keys=[KEYS.leader, KEYS.epoch, KEYS.resume], args=["b", 7, "{}", "", "1.0"])
    assert ok == 1
    assert (await r.hgetall(KEYS.resume))[b"saved_by"] == b"b"


async def test_scripts_survive_a_redis_restart(r: aioredis.Redis, redis_server: object) -> None:
    """After a restart wiped the script cache, the same Script objects still run."""
    acquire = r.register_script(scripts.ACQUIRE)
    assert await acquire(keys=[KEYS.leader, KEYS.epoch], args=["a", 5000]) == 1
    redis_server.restart()  # type: ignore[attr-defined]
    await r.connection_pool.disconnect()
    assert await acquire(keys=[KEYS.leader, KEYS.epoch], args=["a", 5000]) == 1


async def test_publish_takes_a_range_of_seqs_for_a_batch(r: aioredis.Redis) -> None:
    """A batch of n changes takes n seqs in one call and carries the first; the next follows."""
    await r.set(KEYS.leader, "a")
    await r.set(KEYS.epoch, 4)
    await r.set(KEYS.seq, 10)
    pubsub = r.pubsub()
    await pubsub.subscribe(KEYS.invalidations)
    await pubsub.get_message(timeout=1)
    changes = [
        Message(kind="delete", seq=0, epoch=4, key=f"k{i}", ct=(1, i), published_at=1.0)
        for i in range(3)
    ]
    body = encode_batch_body(
        [encode_change(m) for m in changes], epoch=4, term="t", published_at=1.0
    )
    script = r.register_script(scripts.PUBLISH)
    args = [KEYS.leader, KEYS.epoch, KEYS.seq]
    first = await script(keys=args, args=["a", 4, KEYS.invalidations, body, "3"])
    assert first[0] == 11  # type: ignore[index]
    assert int(await r.get(KEYS.seq)) == 13
    assert (await _publish(r, "a", 4))[0] == 14  # type: ignore[index]
    raw = []
    while len(raw) < 2:
        m = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if m:
            raw.append(m["data"])
    batch = decode_batch(raw[0])
    assert [(c.seq, c.key, c.ct) for c in batch.changes] == [
        (11, "k0", (1, 0)),
        (12, "k1", (1, 1)),
        (13, "k2", (1, 2)),
    ]
    assert decode_batch(raw[1]).first.seq == 14
    await pubsub.aclose()
