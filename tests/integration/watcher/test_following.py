"""A watcher on a real Redis and the MongoDB wire double: changes in, messages out."""

from __future__ import annotations

import pytest
import structlog
from pymongo import AsyncMongoClient

from tests.integration.watcher.rig import (
    COLLECTION,
    DB,
    KEYS,
    collecting,
    eventually,
    run_watcher,
    settings_for,
)
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration


async def test_inserts_updates_and_deletes_are_published_with_their_keys(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Each write becomes an upsert/delete naming the key; the post-image travels along."""
    mongo_double.insert_documents([{"_id": 1, "source_id": "pre", "v": 0}])
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        ):
            await eventually(lambda: seen.resyncs() == ["no_token"])
            await eventually(lambda: run.watcher.stats.stream_open)
            await coll.insert_one({"_id": 2, "source_id": "a", "v": 1})
            await coll.update_one({"_id": 2}, {"$set": {"v": 2}})
            await coll.delete_one({"_id": 1})  # key known only from the start-up scan
            await coll.delete_one({"_id": 2})
            await eventually(lambda: len(seen.changes()) >= 5)
        kinds = [(m.kind, m.key, m.op) for m in seen.changes()]
        assert kinds == [
            ("resync", None, None),
            ("upsert", "a", "insert"),
            ("upsert", "a", "update"),
            ("delete", "pre", "delete"),
            ("delete", "a", "delete"),
        ]
        assert seen.changes()[2].doc == {"_id": 2, "source_id": "a", "v": 2}
        seqs = [m.seq for m in seen.changes()]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        await client.close()


async def test_a_connection_hang_up_mid_stream_loses_nothing(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """When MongoDB drops every connection mid-stream, the stream resumes; no change is lost."""
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        ):
            await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
            for n in range(20):
                await coll.insert_one({"_id": n, "source_id": f"k{n}"})
                if n in (5, 12):
                    mongo_double.hangup()
            await eventually(lambda: seen.keys() >= {f"k{n}" for n in range(20)})
        assert seen.resyncs() == ["no_token"]
    finally:
        await client.close()


async def test_history_lost_publishes_one_resync_and_restarts(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """A 286 on resume → exactly one ``resync(history_lost)``; later changes still flow."""
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        ):
            await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
            mongo_double.fail_commands("getMore", code=286, times=1)
            await eventually(lambda: seen.resyncs() == ["no_token", "history_lost"])
            await coll.insert_one({"_id": 1, "source_id": "after"})
            await eventually(lambda: "after" in seen.keys())
        assert seen.resyncs() == ["no_token", "history_lost"]
        assert run.watcher.stats.resyncs["history_lost"] == 1
    finally:
        await client.close()


async def test_a_token_older_than_the_history_resyncs_once_on_start(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Starting from a stored token the oplog no longer covers → one resync, not a retry loop."""
    settings = settings_for(redis_url, mongo_double.uri, "w1")
    async with run_watcher(settings) as run:
        await eventually(lambda: run.watcher.stats.stream_open)
    mongo_double.insert_documents([{"_id": n, "source_id": f"k{n}"} for n in range(3)])
    mongo_double.forget_history()
    async with collecting(redis_url) as seen, run_watcher(settings) as run:
        await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
        await eventually(lambda: run.watcher.stats.last_empty_batch_at is not None)
    assert seen.resyncs() == ["history_lost"]


async def test_drop_publishes_resync_and_the_stream_follows_the_new_collection(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Dropping the collection → ``resync(drop)``; documents inserted afterwards still flow."""
    client: AsyncMongoClient[dict] = AsyncMongoClient(mongo_double.uri)
    coll = client[DB][COLLECTION]
    try:
        async with (
            collecting(redis_url) as seen,
            run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
        ):
            await eventually(lambda: run.watcher.stats.stream_open and seen.resyncs())
            await coll.insert_one({"_id": 1, "source_id": "before"})
            await eventually(lambda: "before" in seen.keys())
            await coll.drop()
            await eventually(lambda: "drop" in seen.resyncs())
            await eventually(lambda: run.watcher.follower.streams_opened == 2)
            await coll.insert_one({"_id": 2, "source_id": "after"})
            await eventually(lambda: "after" in seen.keys())
        assert seen.resyncs() == ["no_token", "drop"]
    finally:
        await client.close()


async def test_a_corrupt_token_in_redis_resyncs_with_a_clear_log_line(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Garbage in ``{ns}:resume`` → one error log line saying so, ``resync``, token rewritten."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.hset(KEYS.resume, mapping={"token": "][", "epoch": "1"})
        with structlog.testing.capture_logs() as logs:
            async with (
                collecting(redis_url) as seen,
                run_watcher(settings_for(redis_url, mongo_double.uri, "w1")) as run,
            ):
                await eventually(lambda: seen.resyncs() == ["corrupt_token"])
                await eventually(lambda: run.watcher.stats.stream_open)
        lines = [e for e in logs if "corrupt" in e["event"]]
        assert len(lines) == 1 and lines[0]["log_level"] == "error"
        token = await client.hget(KEYS.resume, "token")
        assert token is not None and token.startswith(b'{"_data"')
    finally:
        await client.aclose()
