"""The replica app end to end in-process: real redis-server, MongoDB double, ASGI client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from service.subscribing import Subscriber
from shared.messages import Message, encode
from tests.integration.service.replica_rig import (
    COLLECTION,
    DB,
    Rig,
    replica_rig,
    wait_for,
)
from tests.support.mongo_double import MongoDouble
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

HMAC_KEY = "integration-hmac-key-0123456789"


def cfg(key: str, container: str | None = None, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"source_id": key, **fields}
    if container is not None:
        doc["ingestion"] = {"landing_container": container}
    return doc


def cached(rig: Rig) -> dict[str, dict[str, Any]]:
    """The replica's serving map, without ``_id`` (messages in these tests carry none)."""
    return {
        k: {f: v for f, v in d.items() if f != "_id"}
        for k, d in rig.replica.cache.snapshot.by_key.items()
    }


def stored(double: MongoDouble) -> dict[str, dict[str, Any]]:
    """What MongoDB holds, keyed like the cache, without ``_id``."""
    return {
        d["source_id"]: {f: v for f, v in d.items() if f != "_id"}
        for d in double.documents(db=DB, collection=COLLECTION)
    }


def resyncs(rig: Rig) -> int:
    return sum(rig.replica.subscriber.state.resyncs.values())


async def test_live_at_once_and_ready_only_after_warming_50k_documents(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """/health/live answers during a slow 50k-document load while /health/ready stays 503."""
    mongo_double.insert_documents(
        (cfg(f"s{i}", f"c{i % 100}", n=i) for i in range(50_000)), db=DB, collection=COLLECTION
    )
    mongo_double.set_latency(150)
    async with replica_rig(redis_url, mongo_double, wait_ready=False) as rig:
        seen_loading = False
        while not rig.replica.cache.warmed:
            live = await rig.http.get("/health/live")
            ready = await rig.http.get("/health/ready")
            assert live.status_code == 200
            assert ready.status_code == 503, ready.json()
            assert ready.json()["status"] == "starting"
            seen_loading = True
            await asyncio.sleep(0.05)
        assert seen_loading
        mongo_double.set_latency(0)
        await rig.wait_ready()
        health = await rig.health()
        assert health["cache_size"] == 50_000 and health["warmed"] is True
        assert health["change_stream_active"] is True


async def test_published_message_updates_the_cache(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """An upsert and a delete published on the channel change what the replica answers."""
    async with replica_rig(redis_url, mongo_double) as rig:
        seq = await rig.leader.upsert(cfg("via-message", "c", v=1))
        await wait_for(lambda: "via-message" in rig.replica.cache.snapshot.by_key)
        response = await rig.http.get("/configs/via-message")
        assert response.status_code == 200 and response.json()["v"] == 1
        assert (await rig.health())["last_seq"] == seq
        await rig.leader.delete("via-message")
        await wait_for(lambda: "via-message" not in rig.replica.cache.snapshot.by_key)
        assert rig.replica.cache.invalidations["delete"] == 1


async def test_killed_pubsub_connection_resyncs_without_divergence(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """CLIENT KILL TYPE pubsub: a change whose message is lost still reaches the cache."""
    async with replica_rig(redis_url, mongo_double) as rig:
        before = resyncs(rig)
        await rig.collection.insert_one(cfg("written-meanwhile", "c"))
        # Its message goes out in the same step that drops the subscription: it is lost.
        await rig.leader.upsert_unseen(cfg("written-meanwhile", "c"))
        await wait_for(lambda: resyncs(rig) > before, what="a resync")
        await rig.wait_ready()
        await wait_for(lambda: cached(rig) == stored(mongo_double), what="cache == MongoDB")
        reasons = rig.replica.subscriber.state.resyncs
        assert reasons["heartbeat_ahead"] + reasons["gap"] >= 1  # the seq proved the loss


async def test_redis_restart_resyncs_and_new_low_seqs_are_applied(
    redis_url: str, redis_server: RedisServer, mongo_double: MongoDouble
) -> None:
    """After a Redis restart (seq and epoch start over) new messages are applied, not dropped."""
    async with replica_rig(redis_url, mongo_double) as rig:
        await rig.leader.take()
        await rig.leader.take()
        for i in range(5):
            await rig.leader.upsert(cfg(f"old{i}"))
        await wait_for(lambda: (rig.replica.subscriber.state.last_seq or 0) >= 5)
        redis_server.restart()
        await rig.leader.take()  # a fresh Redis: epoch 1, seq 0
        await wait_for(lambda: rig.replica.subscriber.state.last_seq == 0, what="resync")
        state = rig.replica.subscriber.state
        assert state.resyncs["epoch_backwards"] + state.resyncs["term_reset"] >= 1
        await rig.collection.insert_one(cfg("after-restart"))
        seq = await rig.leader.upsert(cfg("after-restart"))
        assert seq == 1
        await wait_for(lambda: "after-restart" in rig.replica.cache.snapshot.by_key)
        await rig.wait_ready()


async def test_redis_down_keeps_serving_and_reports_degraded(
    redis_url: str, redis_server: RedisServer, mongo_double: MongoDouble
) -> None:
    """With Redis gone the replica stays in service (degraded), hits and misses still answer."""
    await asyncio.to_thread(
        mongo_double.insert_documents, [cfg("kept", "c")], db=DB, collection=COLLECTION
    )
    async with replica_rig(redis_url, mongo_double) as rig:
        redis_server.stop()
        await wait_for(lambda: not rig.replica.subscriber.state.redis_ok, what="redis down")
        ready = await rig.http.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert (await rig.health())["change_stream_active"] is False
        assert (await rig.http.get("/configs/kept")).status_code == 200
        await rig.collection.insert_one(cfg("created-while-down"))
        assert (await rig.http.get("/configs/created-while-down")).status_code == 200
        redis_server.start()
        await rig.leader.take()
        await wait_for(lambda: rig.replica.subscriber.state.redis_ok, what="redis back")
        await rig.wait_ready()
        state = rig.replica.subscriber.state
        # Nothing was published before the outage: the new term continues at seq 0 and is
        # bridged -- a reconnect alone costs no reload.
        assert state.resubscriptions >= 1 and state.reloads == 0


async def test_garbage_on_the_channel_is_rejected_counted_and_survived(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Undecodable bytes are counted by reason; the replica resyncs and stays ready."""
    async with replica_rig(redis_url, mongo_double) as rig:
        await rig.redis.publish(rig.keys.invalidations, b"\x00\xffnot json")
        await rig.redis.publish(rig.keys.invalidations, b'{"v": 99}')
        rejected = rig.replica.subscriber.state.rejected
        await wait_for(lambda: rejected["bad_json"] == 1 and rejected["unknown_version"] == 1)
        await rig.wait_ready()
        await rig.leader.upsert(cfg("still-working"))
        await wait_for(lambda: "still-working" in rig.replica.cache.snapshot.by_key)
        text = (await rig.http.get("/metrics")).text
        assert 'scc_messages_rejected_total{reason="bad_json"} 1.0' in text


async def test_unsigned_message_is_rejected_when_hmac_is_on(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """With SCC_MESSAGE_HMAC_KEY set, signed messages apply and an unsigned one is rejected."""
    async with replica_rig(redis_url, mongo_double, hmac_key=HMAC_KEY) as rig:
        await rig.leader.upsert(cfg("signed"))
        await wait_for(lambda: "signed" in rig.replica.cache.snapshot.by_key)
        forged = encode(
            Message(kind="upsert", seq=99, epoch=rig.leader.epoch, key="forged", doc=cfg("forged"))
        )
        await rig.redis.publish(rig.keys.invalidations, forged)
        await wait_for(lambda: rig.replica.subscriber.state.rejected["unsigned"] == 1)
        await rig.wait_ready()
        assert "forged" not in rig.replica.cache.snapshot.by_key


async def test_read_your_write_by_key_and_by_blob_event(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """A config inserted through the driver is found at once, 200 times, before any message."""
    async with replica_rig(redis_url, mongo_double) as rig:
        for i in range(200):
            await rig.collection.insert_one(cfg(f"ryw{i}", f"land{i}"))
            by_key = await rig.http.get(f"/configs/ryw{i}")
            assert by_key.status_code == 200, by_key.text
            event = [
                {
                    "id": f"ev{i}",
                    "subject": f"/blobServices/default/containers/land{i}/blobs/in/f{i}.csv",
                    "eventType": "Microsoft.Storage.BlobCreated",
                    "eventTime": "2026-11-24T00:00:00Z",
                    "dataVersion": "1",
                    "data": {"url": f"https://acct.blob.core.windows.net/land{i}/in/f{i}.csv"},
                }
            ]
            posted = await rig.http.post("/events/blob", json=event)
            assert posted.status_code == 200, posted.text
            assert posted.json()["results"][0]["outcome"] == "accepted", posted.text
        accepted = await rig.redis.xlen(rig.keys.events_accepted)
        assert accepted == 200


async def test_metrics_expose_the_seed_names_with_sane_values(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """/metrics parses and carries the five seed series plus the replica's own."""
    await asyncio.to_thread(
        mongo_double.insert_documents,
        [cfg("m1", "c"), cfg("m2", "c")],
        db=DB,
        collection=COLLECTION,
    )
    async with replica_rig(redis_url, mongo_double) as rig:
        for _ in range(3):
            assert (await rig.http.get("/configs/m1")).status_code == 200
        assert (await rig.http.get("/configs/nope")).status_code == 404
        await rig.collection.insert_one(cfg("m3"))
        await rig.leader.upsert(cfg("m3"))
        await wait_for(lambda: rig.replica.cache.size == 3)
        response = await rig.http.get("/metrics")
        assert response.status_code == 200
        samples: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)

        def value(name: str, **labels: str) -> float:
            matching = [s.value for s in samples[name] if labels.items() <= s.labels.items()]
            assert len(matching) == 1, (name, labels, samples.get(name))
            return float(matching[0])

        assert value("source_config_cache_hits_total") >= 3
        assert value("source_config_cache_misses_total") >= 1
        assert value("source_config_cache_invalidations_total", reason="upsert") >= 1
        assert value("source_config_cache_invalidations_total", reason="reload") >= 1
        assert 0 <= value("source_config_cache_age_seconds") < 5
        assert value("source_config_cache_size") == 3
        assert value("scc_replica_resyncs_total", reason="gap") == 0
        assert value("scc_messages_rejected_total", reason="bad_json") == 0
        assert 0 <= value("scc_replica_lag_seconds") < 5


async def test_heartbeat_hash_is_written_with_a_ttl_and_removed_at_shutdown(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """{ns}:replica:{id} holds the replica's state with a TTL, and goes away on stop."""
    async with replica_rig(redis_url, mongo_double) as rig:
        key = rig.keys.replica("replica-1")

        async def written() -> bool:
            raw = await rig.redis.hgetall(key)
            return raw.get(b"ready") == b"1"

        await wait_for(written, what="heartbeat hash")
        assert 0 < await rig.redis.ttl(key) <= 5
        raw = await rig.redis.hgetall(key)
        assert raw[b"instance_id"] == b"replica-1" and raw[b"change_stream_active"] == b"1"
    async with aioredis.Redis.from_url(redis_url) as fresh:  # the rig's client is closed
        assert not await fresh.exists(key)


async def test_dead_subscriber_task_fails_readiness_and_liveness(
    redis_url: str, mongo_double: MongoDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root task that dies is logged and turns /health/ready and /health/live to 503."""

    async def broken(self: Subscriber, *, max_cycles: int | None = None) -> None:
        raise RuntimeError("bug in the subscriber")

    monkeypatch.setattr(Subscriber, "run", broken)
    async with replica_rig(redis_url, mongo_double, wait_ready=False) as rig:
        await wait_for(lambda: rig.replica.supervisor.failure is not None)
        ready = await rig.http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "bug in the subscriber" in ready.json()["problems"][0]
        assert (await rig.http.get("/health/live")).status_code == 503


async def test_hung_redis_is_noticed_by_silence_and_survived(
    redis_url: str, redis_server: RedisServer, mongo_double: MongoDouble
) -> None:
    """A paused Redis stops heartbeats: stream inactive, degraded; after resume ok, no reload."""
    async with replica_rig(redis_url, mongo_double) as rig:
        redis_server.pause()
        try:
            await wait_for(lambda: not rig.replica.subscriber.state.stream_active, what="silence")
            ready = await rig.http.get("/health/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        finally:
            redis_server.resume()
        await rig.wait_ready()
        state = rig.replica.subscriber.state
        # Silence proved nothing was lost: the heartbeats after the pause continue the seq.
        assert sum(state.resyncs.values()) == 0 and state.reloads == 0
