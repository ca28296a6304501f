"""Encoding a change for the wire, whatever the document: size cap and poison fallbacks.

Why a module of its own: one change is encoded either as a single ``v: 1`` message body
(:func:`shared.messages.encode_body`) or as one change of a batch
(:func:`shared.batches.encode_change`), and both must obey the same rules:

* a document whose message would exceed the size limit is sent key-only with
  ``refetch: true`` (replicas read it from MongoDB), counted as ``oversized``;
* a *poison document*, one that cannot be encoded at all, is sent key-only too (an
  upsert), without its ``_id`` (a delete), or as a ``resync`` (reason ``poison_event``)
  when even that fails -- counted, logged with its ``_id``, never an exception.

A ``resync`` cannot travel in a batch: :meth:`Encoder.encode` says when its result is a
single-message body that must go out alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final

import structlog

from shared.batches import BATCH_OVERHEAD, encode_change
from shared.messages import Message, encode_body
from watcher.reporting import WatcherStats

log = structlog.get_logger("watcher.encoding")

#: What encoding a document into a message raises when it cannot be done (orjson's
#: ``JSONEncodeError`` -- e.g. nesting deeper than it goes -- is a ``TypeError``).
UNENCODABLE: Final = (TypeError, ValueError, OverflowError, RecursionError)
#: Room kept for the ``"seq":N,`` the script splices in.
SEQ_ROOM: Final = 32


class Encoder:
    """Encodes messages under ``max_bytes``, falling back as the module docstring says."""

    def __init__(self, *, stats: WatcherStats, hmac_key: bytes | None, max_bytes: int) -> None:
        self._stats = stats
        self._hmac_key = hmac_key
        self._max_bytes = max_bytes

    def body(self, message: Message) -> bytes:
        """``message`` as a single ``v: 1`` body (without seq), signed if keyed."""
        return self.encode(message, batch=False)[1]

    def encode(self, message: Message, *, batch: bool) -> tuple[Message, bytes, bool]:
        """(the message actually sent, its bytes, whether those are a batch change).

        With ``batch``, the bytes are a :func:`encode_change` fragment -- unless the
        change fell back to a ``resync``, which comes back as a ``v: 1`` body (False).
        """
        room = BATCH_OVERHEAD if batch else SEQ_ROOM
        encode: Callable[[Message], bytes] = self._change if batch else self._single
        try:
            data = encode(message)
        except UNENCODABLE as e:  # a poison document: it cannot travel, its key can
            return self._unencodable(message, e, encode)
        if message.kind != "upsert" or len(data) + room <= self._max_bytes:
            return message, data, batch
        self._stats.oversized += 1
        log.warning(
            "document too large for a message; sent key-only for refetch",
            key=message.key,
            bytes=len(data),
            limit=self._max_bytes,
        )
        slim = replace(message, doc=None, refetch=True, reason=None)
        return slim, encode(slim), batch

    def _single(self, message: Message) -> bytes:
        return encode_body(message, hmac_key=self._hmac_key)

    def _change(self, message: Message) -> bytes:
        return encode_change(message, signed=self._hmac_key is not None)

    def _unencodable(
        self, message: Message, error: Exception, encode: Callable[[Message], bytes]
    ) -> tuple[Message, bytes, bool]:
        """The encode-failure fallback: the same message without what cannot be encoded.

        An upsert goes key-only with ``refetch`` (replicas read the document themselves:
        they decode BSON, only its JSON form failed); a delete drops its ``_id``; and if
        even that fails, a ``resync`` (reason ``poison_event``) -- never an exception.
        """
        detail = f"{type(error).__name__}: {error}"[:300]
        self._stats.record_poison("unencodable", message.doc_id, detail)
        log.error(
            "poison document: cannot be encoded into a message; sent key-only",
            kind=message.kind,
            key=message.key,
            _id=repr(message.doc_id)[:200],
            error=detail,
        )
        fallbacks: list[Message] = []
        if message.kind == "upsert":
            fallbacks.append(replace(message, doc=None, refetch=True))
            fallbacks.append(replace(message, doc=None, refetch=True, doc_id=None))
        elif message.kind == "delete" and message.key is not None:
            fallbacks.append(replace(message, doc_id=None))
        for slim in fallbacks:
            try:
                return slim, encode(slim), encode == self._change
            except UNENCODABLE:
                continue
        resync = replace(
            message,
            kind="resync",
            key=None,
            doc=None,
            doc_id=None,
            refetch=False,
            reason="poison_event",
        )
        return resync, self._single(resync), False
