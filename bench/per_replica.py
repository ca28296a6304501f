"""The per-replica design this system replaces, implemented faithfully as a comparison subject.

Not used by the product: it exists so every benchmark can put a number on "how much better
than what we had". Its four defining traits, kept exactly (do not optimise them away, or
the comparison lies):

1. the cache is a ``list`` of documents, scanned linearly on every lookup;
2. every hit calls an OpenTelemetry counter's ``add(1)`` (a synchronous SDK instrument);
3. any change drops the whole cache, and the next lookup re-reads the whole collection
   (``find({}).to_list()``), with no single-flight: concurrent lookups after a drop each
   read it;
4. every replica watches MongoDB itself, with its own change stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pymongo.asynchronous.collection import AsyncCollection

from bench.common import KEY_FIELD, BenchError


def make_meter() -> tuple[Meter, MeterProvider]:
    """An SDK meter with a real (in-memory) reader, as such a replica would have."""
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return provider.get_meter("per-replica-design"), provider


class PerReplicaCache:
    """One replica's cache in the per-replica design (see the module docstring)."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]] | None,
        *,
        meter: Meter,
        key_field: str = KEY_FIELD,
        docs: Iterable[dict[str, Any]] | None = None,
    ) -> None:
        self._collection = collection
        self._key_field = key_field
        self._docs: list[dict[str, Any]] | None = None if docs is None else list(docs)
        self._hits = meter.create_counter("source_config_cache_hits", description="hits")
        self._misses = meter.create_counter("source_config_cache_misses", description="misses")
        self.reloads = 0
        self.changes_seen = 0

    @property
    def loaded(self) -> bool:
        """True while the list is populated (False after a change dropped it)."""
        return self._docs is not None

    async def get(self, key: str) -> dict[str, Any] | None:
        """The config for ``key``: re-read everything if dropped, then scan the list."""
        docs = self._docs
        if docs is None:
            docs = await self.reload()
        field = self._key_field
        for doc in docs:
            if doc.get(field) == key:
                self._hits.add(1)
                return doc
        self._misses.add(1)
        return None

    async def reload(self) -> list[dict[str, Any]]:
        """Read the whole collection into the list."""
        if self._collection is None:
            raise BenchError("this per-replica cache was built without a collection")
        docs: list[dict[str, Any]] = await self._collection.find({}).to_list()
        self._docs = docs
        self.reloads += 1
        return docs

    def drop(self) -> None:
        """Forget everything (what the design does on any change)."""
        self._docs = None

    async def follow(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        """Watch the collection with this replica's own change stream until ``stop`` is set.

        ``ready`` is set once the stream is open, so no change made after it is missed.
        """
        if self._collection is None:
            raise BenchError("this per-replica cache was built without a collection")
        async with await self._collection.watch(max_await_time_ms=100) as stream:
            ready.set()
            while not stop.is_set():
                change = await stream.try_next()
                if change is not None:
                    self.drop()
                    self.changes_seen += 1
