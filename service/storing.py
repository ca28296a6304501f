"""The replica's only way to read MongoDB: a small port and its PyMongo adapter.

Why a port: the cache and the subscriber are tested against an in-memory fake and run
in production against :class:`MongoConfigStore`; neither knows PyMongo exists. Every
read uses read concern ``majority`` on the primary, so the replica never installs a
write that may still be rolled back -- the change stream, and therefore every message,
reports only majority-committed changes, and a reload must not be ahead of them.

Invariant: a method returns documents exactly as PyMongo decodes them (see
:data:`shared.clients.MONGO_DOCUMENT_OPTIONS`) or raises :class:`StoreError`; no PyMongo
or BSON exception (a stored document PyMongo cannot decode, say) leaves this module.
When a collection read (:meth:`MongoConfigStore.load_all`, ``find_by_container``) meets a
document the driver cannot decode (a *poison document*: a binary subtype 4 that is not 16
bytes, invalid UTF-8, ...), it is read again in raw batches decoded here one document at
a time: the poison is logged with its ``_id``, counted in
:attr:`MongoConfigStore.undecodable` and left out -- the warm-up never fails forever on
it, just as the watcher publishes it as gone. Reading that one document by key is a
:class:`StoreError` naming the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

import bson
import structlog
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference

from service.errors import StoreError
from shared.settings import MongoSettings

log = structlog.get_logger("service.storing")

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
        self._codec: CodecOptions[dict[str, Any]] = self._collection.codec_options.with_options(
            document_class=dict
        )
        self._raw_codec = self._codec.with_options(document_class=RawBSONDocument)
        #: Documents left out of collection reads because they could not be decoded.
        self.undecodable = 0

    async def load_all(self) -> list[dict[str, Any]]:
        """Every document that decodes (poison documents left out)."""
        try:
            return await self._read_all({})
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"loading {self._where} failed: {e}") from e

    async def _read_all(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        # The driver's own decoding is the fast path (a reload of the whole collection);
        # only when some document does not decode is the read repeated in raw batches,
        # to leave out exactly the documents that cannot be decoded.
        try:
            return [doc async for doc in self._collection.find(query)]
        except BSONError as e:
            log.warning("a document does not decode; reading again in raw batches", error=str(e))
        return await self._read_raw(query)

    async def _read_raw(self, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        async with self._collection.find_raw_batches(query) as batches:
            async for batch in batches:
                try:
                    docs += bson.decode_all(batch, self._codec)
                except Exception:  # some document of this batch does not decode
                    docs += self._decode_one_by_one(batch)
        return docs

    def _decode_one_by_one(self, batch: bytes) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for raw in bson.decode_all(batch, self._raw_codec):
            try:
                docs.append(bson.decode(raw.raw, self._codec))
            except Exception as e:  # bson raises InvalidBSON, ValueError, ...
                self.undecodable += 1
                log.error(
                    "poison document: undecodable, left out of the cache",
                    collection=self._where,
                    _id=_id_of(raw, self._codec),
                    error=f"{type(e).__name__}: {e}"[:300],
                    hint="lookups of its key answer 503 until the document is fixed",
                )
        return docs

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
            return await self._read_all({CONTAINER_FIELD: container})
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"reading {CONTAINER_FIELD}={container!r} failed: {e}") from e

    async def read_time(self) -> tuple[int, int] | None:
        """The ``operationTime`` of a majority read: a *lower bound* for any read after it.

        On a replica set every reply carries ``operationTime`` (3.6+), and for a majority
        read it is at most the majority commit point when the reply was sent; every change
        at or before it is visible to any majority read that starts afterwards. It is not
        the exact snapshot of the read that carried it (a write may commit meanwhile), so
        callers take it *before* the read they bound, never from that read itself.
        """
        try:
            async with self._client.start_session(causal_consistency=False) as session:
                # Raw batches: no document is decoded, so a poison document cannot fail it.
                async with self._collection.find_raw_batches(
                    {}, projection={"_id": 1}, limit=1, session=session
                ) as batches:
                    async for _ in batches:
                        pass
                ts = session.operation_time
        except (PyMongoError, BSONError) as e:
            raise StoreError(f"reading the cluster time of {self._where} failed: {e}") from e
        return _as_pair(ts)


def _as_pair(ts: Any) -> tuple[int, int] | None:
    return None if ts is None else (int(ts.time), int(ts.inc))


def _id_of(raw: RawBSONDocument, codec: CodecOptions[dict[str, Any]]) -> str:
    try:
        value = raw["_id"]
        if isinstance(value, RawBSONDocument):
            value = bson.decode(value.raw, codec)
        return repr(value)[:200]
    except Exception:
        return "(undecodable)"
