"""The PyMongo side of the change source: opens streams and turns driver errors into ours.

Only documented PyMongo behaviour is relied on: ``AsyncCollection.watch`` with
``start_after`` (the one resume option that can pass an ``invalidate``),
``full_document="updateLookup"``, ``max_await_time_ms`` so empty batches come back, and
``try_next``/``resume_token``. The driver resumes by itself after network errors and
resumable codes; whatever reaches us is classified here:

* 286 ChangeStreamHistoryLost → ``HistoryLost("history_lost")``
* 260 InvalidResumeToken → ``HistoryLost("invalid_token")``
* 280 ChangeStreamFatalError, 40647, or a message about the resume token/point →
  ``HistoryLost("token_refused")``
* anything else from PyMongo → :class:`SourceUnavailable` (retried with backoff).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from watcher.errors import HistoryLost, SourceUnavailable, WatcherError
from watcher.resuming import ResumeToken
from watcher.watching import WATCHED_OPS

#: Server error codes meaning "this token will never work again", by resync reason.
TOKEN_CODES: Final = {
    286: "history_lost",
    260: "invalid_token",
    280: "token_refused",
    40647: "token_refused",
}
_TOKEN_WORDS: Final = ("resume token", "resume point", "resumetoken")


def classify(error: PyMongoError) -> WatcherError:
    """The watcher error a PyMongo error means (see the module docstring)."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, OperationFailure):
        reason = TOKEN_CODES.get(error.code or 0)
        if reason is None and any(w in str(error).lower() for w in _TOKEN_WORDS):
            reason = "token_refused"
        if reason is not None:
            return HistoryLost(reason, f"code {error.code}: {detail}"[:500])
    return SourceUnavailable(detail[:500])


def pipeline() -> list[dict[str, Any]]:
    """The change-stream pipeline: only the operation types the watcher acts on."""
    return [{"$match": {"operationType": {"$in": list(WATCHED_OPS)}}}]


class MongoStream:
    """:class:`watcher.watching.ChangeStream` over PyMongo's ``AsyncChangeStream``."""

    def __init__(self, stream: AsyncChangeStream[Mapping[str, Any]]) -> None:
        self._stream = stream

    @property
    def resume_token(self) -> ResumeToken | None:
        """``stream.resume_token``."""
        return self._stream.resume_token

    async def try_next(self) -> Mapping[str, Any] | None:
        """``stream.try_next()`` with errors classified."""
        try:
            return await self._stream.try_next()
        except PyMongoError as e:
            raise classify(e) from e

    async def close(self) -> None:
        """``stream.close()``."""
        try:
            await self._stream.close()
        except PyMongoError as e:
            raise classify(e) from e


class MongoChangeSource:
    """:class:`watcher.watching.ChangeSource` for one collection."""

    def __init__(
        self, collection: AsyncCollection[Mapping[str, Any]], *, max_await_ms: int
    ) -> None:
        self._collection = collection
        self._max_await_ms = max_await_ms

    async def open(self, start_after: ResumeToken | None) -> MongoStream:
        """``collection.watch(...)`` after ``start_after`` (or from now)."""
        try:
            stream = await self._collection.watch(
                pipeline=pipeline(),
                full_document="updateLookup",
                max_await_time_ms=self._max_await_ms,
                start_after=start_after,
            )
        except PyMongoError as e:
            raise classify(e) from e
        return MongoStream(stream)

    async def scan_keys(self, key_field: str) -> AsyncIterator[tuple[Any, Any]]:
        """``find({}, {_id: 1, key_field: 1})``, yielding ``(_id, document)``."""
        try:
            async with self._collection.find({}, projection={"_id": 1, key_field: 1}) as cursor:
                async for doc in cursor:
                    yield doc.get("_id"), doc
        except PyMongoError as e:
            raise classify(e) from e
