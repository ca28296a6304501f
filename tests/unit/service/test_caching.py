"""The cache: O(1) hits, single-flight misses, negative entries, races, staleness, swaps."""

from __future__ import annotations

import asyncio

import pytest

from service.caching import ConfigCache
from service.errors import StoreError
from service.snapshot import Snapshot
from tests.unit.service.fakes import FakeClock, FakeStore, config


def make_cache(
    store: FakeStore,
    clock: FakeClock,
    *,
    negative_ttl_s: float = 2.0,
    max_staleness_s: float = 30.0,
) -> ConfigCache:
    return ConfigCache(
        store=store,
        key_field="source_id",
        negative_ttl_s=negative_ttl_s,
        max_staleness_s=max_staleness_s,
        clock=clock,
    )


def warm(cache: ConfigCache, clock: FakeClock, *docs: dict[str, object]) -> None:
    snapshot, _ = Snapshot.build([dict(d) for d in docs], key_field="source_id")
    cache.install(snapshot, fresh_at=clock())
    cache.set_stream_active(True)


async def test_hit_is_served_from_memory_without_a_store_read() -> None:
    """A cached key is answered from the dict and counted as a hit, with no MongoDB read."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock, config("a", "c1"))
    assert (await cache.get_config_by_source_id("a")) == config("a", "c1")
    assert (await cache.configs_for_container("c1")) == [config("a", "c1")]
    assert (cache.hits, cache.misses, store.key_reads, store.container_reads) == (2, 0, [], [])


def test_peek_answers_only_trusted_hits_from_memory() -> None:
    """peek returns a cached config while the stream is live, and None when it cannot vouch."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    assert cache.peek("a") is None  # not warmed yet
    warm(cache, clock, config("a", "c1"))
    assert cache.peek("a") == config("a", "c1")
    assert cache.peek("b") is None
    cache.apply_upsert("a", config("a", "c2"))
    assert cache.peek("a") == config("a", "c2")  # messages are visible on the hot path
    cache.set_stream_active(False)
    assert cache.peek("a") is None  # stream silent: the async path decides
    snapshot, _ = Snapshot.build([config("z", "c9")], key_field="source_id")
    cache.set_stream_active(True)
    cache.install(snapshot, fresh_at=clock())
    assert (cache.peek("a"), cache.peek("z")) == (None, config("z", "c9"))  # reload swapped
    assert (cache.hits, store.key_reads) == (3, [])


async def test_concurrent_misses_read_the_store_once() -> None:
    """Fifty concurrent lookups of one unknown key make exactly one MongoDB read."""
    clock, store = FakeClock(), FakeStore([config("new")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookups = [asyncio.create_task(cache.get_config_by_source_id("new")) for _ in range(50)]
    await store.entered.wait()
    store.gate.set()
    results = await asyncio.gather(*lookups)
    assert results == [config("new")] * 50
    assert store.key_reads == ["new"]
    assert cache.misses == 50 and cache.store_reads == 1
    assert (await cache.get_config_by_source_id("new")) == config("new")  # now installed
    assert store.key_reads == ["new"]


async def test_concurrent_container_misses_read_the_store_once() -> None:
    """Concurrent lookups of an uncached container share one find() and then hit."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.put(config("x", "landing"))
    store.gate = asyncio.Event()
    lookups = [asyncio.create_task(cache.configs_for_container("landing")) for _ in range(20)]
    await store.entered.wait()
    store.gate.set()
    assert await asyncio.gather(*lookups) == [[config("x", "landing")]] * 20
    assert store.container_reads == ["landing"]
    assert (await cache.get_config_by_source_id("x")) == config("x", "landing")
    assert store.key_reads == []


async def test_config_created_just_before_its_first_lookup_is_found() -> None:
    """A config inserted after the load but before any message is found by key and container."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.put(config("fresh", "drop"))
    assert (await cache.configs_for_container("drop")) == [config("fresh", "drop")]
    store.put(config("fresh2"))
    assert (await cache.get_config_by_source_id("fresh2")) == config("fresh2")


async def test_negative_entry_is_kept_until_a_message_clears_it() -> None:
    """An unknown key is remembered (no second read) until the next message for it."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock)
    assert await cache.get_config_by_source_id("k") is None
    store.put(config("k", v=1))  # written in MongoDB, message not yet applied
    assert await cache.get_config_by_source_id("k") is None
    assert store.key_reads == ["k"]
    cache.apply_upsert("k", config("k", v=1))
    assert (await cache.get_config_by_source_id("k")) == config("k", v=1)
    assert store.key_reads == ["k"]


async def test_negative_entry_expires_after_its_ttl() -> None:
    """Once the negative TTL has passed, an unknown key is read from MongoDB again."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock, negative_ttl_s=2.0)
    warm(cache, clock)
    assert await cache.get_config_by_source_id("k") is None
    store.put(config("k"))
    clock.advance(2.01)
    assert (await cache.get_config_by_source_id("k")) == config("k")
    assert store.key_reads == ["k", "k"]


async def test_container_negative_entry_is_cleared_by_an_upsert_landing_there() -> None:
    """ "No config for this container" is forgotten as soon as a message puts one there."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock)
    assert await cache.configs_for_container("c") == []
    cache.apply_upsert("s", config("s", "c"))
    assert await cache.configs_for_container("c") == [config("s", "c")]
    assert store.container_reads == ["c"]


async def test_fetch_racing_a_newer_message_never_wins() -> None:
    """A MongoDB read that started before a message for its key neither answers nor installs."""
    clock, store = FakeClock(), FakeStore([config("k", v="old")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    cache.apply_upsert("k", config("k", v="new"))
    store.gate.set()
    assert (await lookup) == config("k", v="new")
    assert (await cache.get_config_by_source_id("k")) == config("k", v="new")


async def test_fetch_racing_a_delete_does_not_resurrect_the_key() -> None:
    """A read that saw the document cannot put it back after a delete message removed it."""
    clock, store = FakeClock(), FakeStore([config("k")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    cache.apply_delete("k")
    store.gate.set()
    assert await lookup is None
    assert cache.size == 0


async def test_container_fetch_racing_a_message_keeps_the_message_version() -> None:
    """A container read does not overwrite a document changed by a message meanwhile."""
    clock, store = FakeClock(), FakeStore([config("a", "c", v=1), config("b", "c", v=1)])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.configs_for_container("c"))
    await store.entered.wait()
    cache.apply_upsert("a", config("a", "c", v=2))
    store.gate.set()
    result = sorted(await lookup, key=lambda d: d["source_id"])
    assert result == [config("a", "c", v=2), config("b", "c", v=1)]


async def test_fetch_racing_a_reload_does_not_touch_the_new_snapshot() -> None:
    """A read that straddles a reload answers its caller but installs nothing."""
    clock, store = FakeClock(), FakeStore([config("k", v="fetched")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    fresh, _ = Snapshot.build([config("other")], key_field="source_id")
    cache.install(fresh, fresh_at=clock())
    store.gate.set()
    assert (await lookup) == config("k", v="fetched")
    assert "k" not in cache.snapshot.by_key


async def test_reload_swaps_the_whole_snapshot_in_one_assignment() -> None:
    """Until install(), readers see the old snapshot whole; after it, the new one whole."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock, config("a", "c1"), config("b", "c1"))
    old = cache.snapshot
    new, skipped = Snapshot.build(
        [config("b", "c2"), config("c", "c2"), {"no": "key"}], key_field="source_id"
    )
    assert skipped == 1
    assert cache.snapshot is old and cache.size == 2  # building touches nothing
    cache.install(new, fresh_at=clock())
    assert cache.snapshot is new
    assert sorted(cache.snapshot.by_container) == ["c2"]
    assert await cache.get_config_by_source_id("a") is None


async def test_snapshot_index_follows_moves_and_deletes() -> None:
    """Moving a config between containers and deleting it keeps the index exact."""
    snapshot = Snapshot()
    snapshot.put("a", config("a", "c1"))
    snapshot.put("a", config("a", "c2"))
    assert list(snapshot.by_container) == ["c2"]
    assert snapshot.remove("a") and not snapshot.remove("a")
    assert snapshot.by_container == {} and snapshot.by_key == {}


async def test_stale_cache_reads_through_until_verified() -> None:
    """Inactive stream + age past the bound: a hit is re-read once, then served for a while."""
    clock, store = FakeClock(), FakeStore([config("k", v=2)])
    cache = make_cache(store, clock, max_staleness_s=30.0)
    warm(cache, clock, config("k", v=1))
    cache.set_stream_active(False)
    clock.advance(10)
    assert (await cache.get_config_by_source_id("k")) == config("k", v=1)  # young enough
    clock.advance(25)
    assert (await cache.get_config_by_source_id("k")) == config("k", v=2)
    assert (await cache.get_config_by_source_id("k")) == config("k", v=2)
    assert store.key_reads == ["k"]
    clock.advance(31)
    store.docs.clear()
    assert await cache.get_config_by_source_id("k") is None  # deleted while we were deaf
    assert store.key_reads == ["k", "k"] and cache.size == 0


async def test_unwarmed_cache_reads_through() -> None:
    """Before the first load is installed, lookups are answered from MongoDB."""
    clock, store = FakeClock(), FakeStore([config("k", "c")])
    cache = make_cache(store, clock)
    assert (await cache.get_config_by_source_id("k")) == config("k", "c")
    assert (await cache.configs_for_container("c")) == [config("k", "c")]
    assert (await cache.get_all_configs()) == [config("k", "c")]
    assert store.loads == 1


async def test_store_failure_propagates_and_the_next_lookup_retries() -> None:
    """A failing read raises StoreError to every waiter and leaves no stuck flight behind."""
    clock, store = FakeClock(), FakeStore([config("k")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.fail = StoreError("mongodb down")
    with pytest.raises(StoreError):
        await cache.get_config_by_source_id("k")
    store.fail = None
    assert (await cache.get_config_by_source_id("k")) == config("k")


async def test_a_cancelled_caller_does_not_cancel_the_shared_read() -> None:
    """If one waiter goes away, the others still get the result of the single read."""
    clock, store = FakeClock(), FakeStore([config("k")])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_config_by_source_id("k"))
    second = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    first.cancel()
    store.gate.set()
    assert (await second) == config("k")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert store.key_reads == ["k"]


async def test_aclose_cancels_reads_in_flight() -> None:
    """Closing the cache stops any MongoDB read still running (no task outlives it)."""
    clock, store = FakeClock(), FakeStore([config("k")])
    cache = make_cache(store, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await lookup


async def test_invalidations_are_counted_by_bounded_reason() -> None:
    """Upserts, deletes and reloads each count under their own reason."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock)
    cache.apply_upsert("a", config("a"))
    cache.apply_upsert("a", config("a", v=2), reason="refetch")
    cache.apply_delete("a")
    assert cache.invalidations == {
        "upsert": 1,
        "refetch": 1,
        "delete": 1,
        "reload": 1,
        "read_through": 0,
    }


def test_upsert_under_a_new_key_drops_the_old_key_of_the_same_document() -> None:
    """A document whose key changed is cached under the new key only (matched by _id)."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock, {**config("old", "c1"), "_id": 7})
    cache.apply_upsert("new", {**config("new", "c1"), "_id": 7})
    assert cache.peek("old") is None and cache.peek("new") is not None
    assert [c["source_id"] for c in cache.snapshot.by_container["c1"].values()] == ["new"]
    assert cache.snapshot.key_for_id(7) == "new"


def test_delete_by_id_removes_whatever_key_holds_the_document() -> None:
    """A delete that names only the _id removes the cached entry with that _id."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock, {**config("a", "c1"), "_id": "x1"}, {**config("b", "c1"), "_id": "x2"})
    cache.apply_delete(None, "x1")
    cache.apply_delete(None, "unknown")  # not cached: nothing to do, nothing raised
    assert cache.peek("a") is None and cache.peek("b") is not None
    assert cache.snapshot.key_for_id("x1") is None


async def test_delete_by_unknown_id_stops_reads_in_flight_from_installing() -> None:
    """A delete by an _id we cannot name makes every read in flight answer but not install."""
    clock, store = FakeClock(), FakeStore([{**config("k"), "_id": "gone"}])
    cache = make_cache(store, clock)
    warm(cache, clock)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    cache.apply_delete(None, "gone")
    store.gate.set()
    assert (await lookup) is not None  # answered from what it read...
    assert cache.snapshot.by_key.get("k") is None  # ...but not installed


def test_delete_of_a_document_spares_a_reused_key_holding_another_document() -> None:
    """A delete naming key k and document X leaves k alone when k now holds document Y."""
    clock, store = FakeClock(), FakeStore()
    cache = make_cache(store, clock)
    warm(cache, clock, {**config("k1", "c1"), "_id": "X"})
    cache.apply_upsert("k1", {**config("k1", "c1"), "_id": "Y"})  # Y took k1; X's entry gone
    cache.apply_delete("k1", "X")  # the watcher's stale map still says X was k1
    held = cache.peek("k1")
    assert held is not None and held["_id"] == "Y"
    cache.apply_delete("k1", "Y")
    assert cache.peek("k1") is None


async def test_container_read_through_keys_documents_by_a_dotted_key_field() -> None:
    """With SCC_KEY_FIELD=meta.sid a container read-through keeps every config under its key."""
    docs = [
        {"source_id": f"row{i}", "meta": {"sid": f"s{i}"}, "ingestion": {"landing_container": "c"}}
        for i in range(2)
    ]
    clock, store = FakeClock(), FakeStore(docs)
    cache = ConfigCache(
        store=store, key_field="meta.sid", negative_ttl_s=2.0, max_staleness_s=30.0, clock=clock
    )
    snapshot, skipped = Snapshot.build([dict(d) for d in docs], key_field="meta.sid")
    cache.install(snapshot, fresh_at=clock())
    assert skipped == 0
    clock.advance(31)  # stale and inactive: the container is read through
    found = await cache.configs_for_container("c")
    assert store.container_reads == ["c"]
    assert sorted(d["meta"]["sid"] for d in found) == ["s0", "s1"]
    assert sorted(cache.snapshot.by_key) == ["s0", "s1"]


async def test_a_slow_read_through_is_verified_as_of_when_it_began() -> None:
    """A read that took 25 s counts as 25 s old: verified for only the rest of the bound."""
    clock, store = FakeClock(), FakeStore([config("k", v=2)])
    cache = make_cache(store, clock, max_staleness_s=30.0)
    warm(cache, clock, config("k", v=1))
    cache.set_stream_active(False)
    clock.advance(31)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    clock.advance(25)  # MongoDB answers slowly
    store.gate.set()
    assert await lookup == config("k", v=2)
    store.gate = None
    clock.advance(10)  # 35 s after the read began: no longer verified
    store.put(config("k", v=3))
    assert await cache.get_config_by_source_id("k") == config("k", v=3)


async def test_a_slow_container_read_does_not_undo_a_newer_key_read() -> None:
    """A container read that began earlier cannot drop a config a later key read installed."""
    clock, store = FakeClock(), FakeStore([config("old", "c")])
    cache = make_cache(store, clock)
    warm(cache, clock, config("old", "c"))
    cache.set_stream_active(False)
    clock.advance(31)
    container_answered, release = asyncio.Event(), asyncio.Event()
    original = store.find_by_container

    async def slow_container(container: str) -> list[dict[str, object]]:
        docs = await original(container)  # MongoDB answers [old] ...
        container_answered.set()
        await release.wait()  # ... and the answer is slow to arrive
        return docs

    store.find_by_container = slow_container  # type: ignore[method-assign,assignment]
    slow = asyncio.create_task(cache.configs_for_container("c"))
    await container_answered.wait()
    store.put(config("moved-in", "c"))  # lands in the container after that answer
    assert await cache.get_config_by_source_id("moved-in") == config("moved-in", "c")
    release.set()
    await slow
    assert "moved-in" in cache.snapshot.by_key


async def test_an_unconfirmed_read_through_racing_a_delete_answers_with_its_own_read() -> None:
    """A delete of an uncached document during a read lets the read answer with what it read."""
    clock, store = FakeClock(), FakeStore([config("k", v="new")])
    cache = make_cache(store, clock)
    warm(cache, clock, config("k", v="old"))
    cache.set_stream_active(False)
    clock.advance(31)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    cache.apply_delete(None, doc_id="some-other-document")  # not cached: reads in flight yield
    store.gate.set()
    assert await lookup == config("k", v="new")


async def test_an_unconfirmed_read_racing_an_older_replay_is_installed() -> None:
    """A replayed change older than a read in flight does not stay cached over that read."""
    clock, store = FakeClock(), FakeStore([{**config("k", v="current"), "_id": 1}])
    cache = make_cache(store, clock)
    warm(cache, clock, {**config("k", v="old"), "_id": 1})
    cache.set_stream_active(False)
    clock.advance(31)
    store.time = (300, 0)
    store.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_config_by_source_id("k"))
    await store.entered.wait()
    replayed = {**config("k", v="replayed"), "_id": 1}
    cache.apply_upsert("k", replayed)  # a watcher catching up replays an older change
    cache.snapshot.stamp(1, (150, 0))
    cache.snapshot.stamp_key("k", (150, 0))
    store.gate.set()
    assert await lookup == {**config("k", v="current"), "_id": 1}
    assert cache.snapshot.by_key["k"] == {**config("k", v="current"), "_id": 1}
