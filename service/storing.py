"""The replica's only way to read MongoDB: a small port and its PyMongo adapter.

Why a port: the cache and the subscriber are tested against an in-memory fake and run
in production against :class:`MongoConfigStore`; neither knows PyMongo exists. Every
read uses read concern ``majority`` on the primary, so the replica never installs a
write that may still be rolled back -- the change stream, and therefore every message,
reports only majority-committed changes, and a reload must not be ahead of them.

Invariant: a method returns documents exactly as PyMongo decodes them (see
:data:`shared.clients.MONGO_DOCUMENT_OPTIONS`) or raises :class:`StoreError`; no PyMongo
or BSON exception (a stored document PyMongo cannot decode, say) leaves this module.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from bson.errors import BSONError
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference

from service.errors import StoreError
from shared.settings import MongoSettings

#: The document path of the secondary index (blob container → configs).
CONTAINER_FIELD: Final = "ingestion.landing_container"


class ConfigStore(Protocol):
    """Read access to the ``source_configs`` collection (majority-committed data only)."""

    async def load_all(self) -> list[dict[str, Any]]:
        """Every document of the collection."""
        ...

    async def find_by_key(self, key: str) -> dict[str, Any] | None:
        """The document whose key field equals ``key``, or ``None``."""
        ...

    async def find_by_container(self, container: str) -> list[dict[str, Any]]:
        """Every document whose ``ingestion.landing_container`` equals ``container``."""
        ...

    async def read_time(self) -> tuple[int, int] | None:
        """A majority-committed cluster time ``(t, i)`` now, or None if the server has none.

        A load that starts after this call reflects every change of an older cluster time.
        """
        ...


class MongoConfigStore:
    """:class:`ConfigStore` on an ``AsyncMongoClient`` (majority reads, primary)."""

    def __init__(self, client: AsyncMongoClient[Any], *, settings: MongoSettings) -> None:
        self._key_field = settings.key_field
        self._client = client
        self._collection = client[settings.database].get_collection(
            settings.collection,
            read_concern=ReadConcern("majority"),
            read_preference=ReadPreference.PRIMARY,
        )
        self._where = f"{settings.database}.{settings.collection}"

    async def load_all(self) -> list[dict[str, Any]]:
        """Every document, read in batches by the driver."""
        try:
            return [doc async for doc in self._collection.find({})]
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"loading {self._where} failed: {e}") from e

    async def find_by_key(self, key: str) -> dict[str, Any] | None:
        """One document by key field (``find_one``)."""
        try:
            doc: dict[str, Any] | None = await self._collection.find_one({self._key_field: key})
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"reading {self._key_field}={key!r} failed: {e}") from e
        return doc

    async def find_by_container(self, container: str) -> list[dict[str, Any]]:
        """Every document landing in ``container``."""
        try:
            return [doc async for doc in self._collection.find({CONTAINER_FIELD: container})]
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"reading {CONTAINER_FIELD}={container!r} failed: {e}") from e

    async def read_time(self) -> tuple[int, int] | None:
        """The ``operationTime`` of a majority read: every change before it is visible.

        MongoDB answers a read with read concern ``majority`` from the majority-committed
        snapshot and reports that snapshot's time as ``operationTime`` (replica sets,
        3.6+); the session records it. A load started afterwards is at least that new.
        """
        try:
            async with self._client.start_session(causal_consistency=False) as session:
                await self._collection.find_one({}, projection={"_id": 1}, session=session)
                ts = session.operation_time
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"reading the cluster time of {self._where} failed: {e}") from e
        return None if ts is None else (ts.time, ts.inc)
