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

Events are read as raw BSON and decoded one by one here (:func:`decode_change`), with the
client's own codec (:data:`shared.clients.DOCUMENT_CODEC`): a document the driver cannot
decode (a binary subtype 4 that is not 16 bytes, invalid UTF-8, ...) raises inside
``try_next`` otherwise -- an error that is no ``PyMongoError``, kills the follower, and
kills the next leader the same way from the same token. Decoded here, it becomes one
event marked :data:`watcher.translating.UNDECODABLE` that still names its ``_id``: the
translator publishes it as a *poison document*, and the stream goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import bson
import structlog
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from watcher.errors import HistoryLost, SourceUnavailable, WatcherError
from watcher.resuming import ResumeToken
from watcher.translating import UNDECODABLE
from watcher.watching import WATCHED_OPS

log = structlog.get_logger("watcher.mongo_source")

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


#: The top-level fields of a change event that name what changed (the post-image aside).
_NEEDED: Final = ("operationType", "clusterTime", "documentKey")


def _inflate(value: Any, codec: CodecOptions[dict[str, Any]]) -> Any:
    return bson.decode(value.raw, codec) if isinstance(value, RawBSONDocument) else value


def decode_change(raw: Mapping[str, Any], codec: CodecOptions[dict[str, Any]]) -> dict[str, Any]:
    """One raw change event decoded with ``codec``, or the part of it that decodes.

    When the whole event does not decode, the parts the watcher uses are decoded one by
    one: if they all decode (the trouble was elsewhere, in ``updateDescription`` say), the
    result is the event without the rest; otherwise it holds what still decodes of
    ``operationType``, ``clusterTime`` and ``documentKey`` and, under :data:`UNDECODABLE`,
    what went wrong.
    """
    if not isinstance(raw, RawBSONDocument):
        return dict(raw)
    try:
        return bson.decode(raw.raw, codec)
    except Exception as e:  # bson raises InvalidBSON, ValueError, OverflowError, ...
        error = f"{type(e).__name__}: {e}"[:300]
    change: dict[str, Any] = {}
    failed = False
    for name in (*_NEEDED, "fullDocument"):
        try:
            if name in raw:
                change[name] = _inflate(raw[name], codec)
        except Exception as e:  # this part (or even the envelope) does not decode
            failed = True
            log.debug("change event field undecodable", field=name, error=type(e).__name__)
    if failed or "documentKey" not in change:
        change[UNDECODABLE] = error
    # else: only parts the watcher does not use (updateDescription, ...) failed to decode
    return change


class MongoStream:
    """:class:`watcher.watching.ChangeStream` over PyMongo's ``AsyncChangeStream``.

    The stream yields raw events (see :class:`MongoChangeSource`); each is decoded here.
    """

    def __init__(
        self,
        stream: AsyncChangeStream[Mapping[str, Any]],
        codec: CodecOptions[dict[str, Any]] | None = None,
    ) -> None:
        self._stream = stream
        self._codec = codec

    @property
    def resume_token(self) -> ResumeToken | None:
        """``stream.resume_token`` (as a plain document)."""
        token = self._stream.resume_token
        if isinstance(token, RawBSONDocument):
            return bson.decode(token.raw)
        return token

    async def try_next(self) -> Mapping[str, Any] | None:
        """``stream.try_next()`` with errors classified and the event decoded."""
        try:
            change = await self._stream.try_next()
        except PyMongoError as e:
            raise classify(e) from e
        if change is None or self._codec is None:
            return change
        return decode_change(change, self._codec)

    def buffered(self) -> bool:
        """Whether the next change is already held (see :func:`holds_next`)."""
        return holds_next(self._stream)

    async def close(self) -> None:
        """``stream.close()``."""
        try:
            await self._stream.close()
        except PyMongoError as e:
            raise classify(e) from e


_warned_no_buffer_view = False


def holds_next(stream: AsyncChangeStream[Any]) -> bool:
    """Whether ``stream.try_next()`` would return a change without a round trip.

    PyMongo keeps the documents of the last ``aggregate``/``getMore`` reply in its command
    cursor and hands them out one per ``try_next``; only when none is left does
    ``try_next`` send a ``getMore`` (which may wait up to ``max_await_time_ms``). PyMongo
    has no public way to ask which case the next call is, so this asks what
    ``AsyncChangeStream.try_next`` itself asks (``self._cursor._has_next()``, PyMongo
    4.x). This is the one place a private attribute is used: if a PyMongo version lacks
    it, the answer is False -- every change is then published on its own (correct, with
    no added latency, just unbatched) -- and a warning says so once.
    """
    global _warned_no_buffer_view
    try:
        return bool(stream._cursor._has_next())
    except AttributeError:
        if not _warned_no_buffer_view:
            _warned_no_buffer_view = True
            log.warning(
                "cannot see the change stream's buffered batch; publishing unbatched",
                hint="this PyMongo version has no AsyncChangeStream._cursor._has_next()",
            )
        return False


class MongoChangeSource:
    """:class:`watcher.watching.ChangeSource` for one collection."""

    def __init__(
        self, collection: AsyncCollection[Mapping[str, Any]], *, max_await_ms: int
    ) -> None:
        self._collection = collection
        #: How the client decodes documents; the raw twin lets us decode one at a time.
        self._codec: CodecOptions[dict[str, Any]] = collection.codec_options.with_options(
            document_class=dict
        )
        self._raw = collection.with_options(
            codec_options=collection.codec_options.with_options(document_class=RawBSONDocument)
        )
        self._max_await_ms = max_await_ms
        #: Documents the start-up key scan could not decode (logged with their ``_id``).
        self.undecodable_scanned = 0

    async def open(self, start_after: ResumeToken | None) -> MongoStream:
        """``collection.watch(...)`` after ``start_after`` (or from now)."""
        try:
            stream = await self._raw.watch(
                pipeline=pipeline(),
                full_document="updateLookup",
                max_await_time_ms=self._max_await_ms,
                start_after=start_after,
            )
        except PyMongoError as e:
            raise classify(e) from e
        return MongoStream(stream, self._codec)

    async def scan_keys(self, key_field: str) -> AsyncIterator[tuple[Any, Any]]:
        """``find({}, {_id: 1, key_field: 1})``, yielding ``(_id, document)``.

        A document that does not decode is logged with its ``_id`` (when that decodes)
        and left out: its key is learned from its next change instead.
        """
        try:
            async with self._raw.find({}, projection={"_id": 1, key_field: 1}) as cursor:
                async for raw in cursor:
                    try:
                        doc = decode_document(raw, self._codec)
                    except Exception as e:  # undecodable: see decode_change
                        self.undecodable_scanned += 1
                        log.error(
                            "document undecodable in the key scan; its key is learned later",
                            _id=_id_of(raw, self._codec),
                            error=f"{type(e).__name__}: {e}"[:300],
                        )
                        continue
                    yield doc.get("_id"), doc
        except PyMongoError as e:
            raise classify(e) from e


def decode_document(raw: Any, codec: CodecOptions[dict[str, Any]]) -> dict[str, Any]:
    """A raw document decoded with ``codec`` (a plain mapping is copied as it is)."""
    if isinstance(raw, RawBSONDocument):
        return bson.decode(raw.raw, codec)
    return dict(raw)


def _id_of(raw: Any, codec: CodecOptions[dict[str, Any]]) -> str:
    try:
        return repr(_inflate(raw["_id"], codec))
    except Exception:
        return "(undecodable)"
