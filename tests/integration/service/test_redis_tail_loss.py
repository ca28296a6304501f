"""Redis losing its last writes (seq set back, an epoch issued twice): no update is lost."""

from __future__ import annotations

import secrets

import pytest

from shared.messages import Message, encode_body
from shared.scripts import PUBLISH
from tests.integration.service.replica_rig import replica_rig, wait_for
from tests.integration.service.test_replica_app import cached, cfg, stored
from tests.support.mongo_double import MongoDouble

pytestmark = pytest.mark.integration


async def test_seq_set_back_within_one_term_still_delivers_every_update(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """{ns}:seq goes back 8 in the same term: the next 5 updates reach the cache anyway."""
    async with replica_rig(redis_url, mongo_double) as rig:
        for i in range(10):
            await rig.collection.insert_one(cfg(f"k{i}", v=0))
            await rig.leader.upsert(cfg(f"k{i}", v=0))
        await wait_for(lambda: rig.replica.subscriber.state.last_seq == 10, what="seq 10")
        await rig.redis.decrby(rig.keys.seq, 8)  # Redis lost its last 8 INCRs
        for i in range(5):
            await rig.collection.update_one({"source_id": f"k{i}"}, {"$set": {"v": 1}})
            await rig.leader.upsert(cfg(f"k{i}", v=1))
        await wait_for(
            lambda: all(rig.replica.cache.snapshot.by_key[f"k{i}"]["v"] == 1 for i in range(5)),
            within_s=10,
            what="the 5 updates after the reset",
        )
        assert cached(rig) == stored(mongo_double)
        state = rig.replica.subscriber.state
        assert state.resyncs["seq_conflict"] + state.resyncs["seq_reset"] >= 1


async def test_an_epoch_issued_twice_is_told_apart_by_the_term_id(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """Another leader gets the same epoch and a lower seq: its changes are not duplicates."""
    async with replica_rig(redis_url, mongo_double) as rig:
        for i in range(6):
            await rig.collection.insert_one(cfg(f"e{i}", v=0))
            await rig.leader.upsert(cfg(f"e{i}", v=0))
        await wait_for(lambda: rig.replica.subscriber.state.last_seq == 6, what="seq 6")
        # The promoted Redis lost the last INCRs of seq and of the epoch.
        await rig.redis.set(rig.keys.seq, 3)
        rig.leader.term = secrets.token_hex(8)  # the same epoch number, another term
        await rig.collection.update_one({"source_id": "e0"}, {"$set": {"v": 2}})
        await rig.leader.upsert(cfg("e0", v=2))
        await wait_for(lambda: rig.replica.cache.snapshot.by_key["e0"]["v"] == 2, what="e0 updated")
        assert rig.replica.subscriber.state.resyncs["term_reset"] >= 1


async def test_the_publish_script_puts_a_lost_counter_back_to_the_terms_last_seq(
    redis_url: str, mongo_double: MongoDouble
) -> None:
    """With the term's last seq as floor, seq continues after Redis lost writes: no reload."""
    async with replica_rig(redis_url, mongo_double) as rig:
        for i in range(4):
            await rig.leader.upsert(cfg(f"f{i}"))
        await rig.redis.set(rig.keys.seq, 1)
        script = rig.redis.register_script(PUBLISH)
        body = encode_body(
            Message(kind="resync", seq=0, epoch=rig.leader.epoch, term=rig.leader.term)
        )
        keys = [rig.keys.leader, rig.keys.epoch, rig.keys.seq, rig.keys.term]
        args = [rig.leader.instance_id, rig.leader.epoch, "unused-channel", body, "1"]
        seq, _ = await script(keys=keys, args=[*args, rig.leader.term, 4])
        assert seq == 5
