"""The batch message: several consecutive changes in one publish on ``{ns}:invalidations``.

Why it exists: a burst of changes sent as one fenced script call and one pub/sub message
each is bounded by round trips (one per change) and by Redis fan-out (messages ×
subscribers). A watcher sends every change of one change-stream batch that fits the
bounds (``SCC_PUBLISH_BATCH_MAX_CHANGES`` / ``SCC_PUBLISH_BATCH_MAX_BYTES``) as ONE
message carrying a range of consecutive seqs. Wire form (``v: 2``)::

    {"seq":FIRST, "v":2, "epoch":int, "term":str, "published_at":float,
     "changes":[{"kind":"upsert"|"delete", "key":str|null, "doc":object|null,
                 "op":str|null, "cluster_time":float|null, "ct":[t,i]|null,
                 "refetch":bool, "reason":str|null, "id":any|null}, ...],
     "sig":hex (optional)}

The i-th change (0-based) has seq ``FIRST + i``; the range is ``[FIRST, FIRST + n - 1]``.
The publish script takes ``n`` seqs at once (``INCRBY n``) and splices ``"seq":FIRST`` in,
exactly as it splices ``seq`` into a single-change message. Each change keeps its own
cluster time (``ct``, the per-document ordering key) and its other fields; the envelope
holds what all of them share (epoch, term, when it was sent). Only upserts and deletes
travel in batches: heartbeats and resyncs are always single ``v: 1`` messages
(:mod:`shared.messages`), and so is a batch of one change, so a quiet collection's
messages look exactly as they did before batching (a rolling upgrade: upgrade replicas
first -- an older replica rejects ``v: 2`` as ``unknown_version`` -- or set
``SCC_PUBLISH_BATCH_MAX_CHANGES=1`` until they are).

Signing: one HMAC over the whole batch -- the sorted-key JSON of every envelope field but
``seq`` and ``sig``, the changes included -- the same rule as for a single message, so
tampering with any change breaks the batch's signature. The watcher encodes each change
once, sorted (:func:`encode_change`), and embeds the fragments unchanged both in the body
and in the signed form (:func:`encode_batch_body`), so signing re-encodes nothing.

Size: a batch is never bigger than the watcher's message cap; one that would be is split
into several (each its own fenced publish), never dropped. :func:`decode_batch` reads both
versions (a ``v: 1`` message is a batch of one), validates every change with the rules of
:func:`shared.messages.decode`, and names the change that is bad (``changes[3]: ...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shared.errors import MessageError
from shared.messages import (
    MAX_MESSAGE_BYTES,
    Message,
    guarded_decode,
    message_from_obj,
    parse_message_json,
    signature_of,
    splice_seq,
    to_ejson,
    verify_signature,
)

BATCH_VERSION: Final = 2
#: The change kinds a batch may carry.
BATCH_KINDS: Final = frozenset({"upsert", "delete"})
#: Bytes a batch envelope takes besides its changes (generous: a 64-character term, a
#: signature, the spliced seq); the publisher keeps ``changes + overhead`` under its cap.
BATCH_OVERHEAD: Final = 512
#: The envelope fields every change of a batch inherits.
_ENVELOPE: Final = ("epoch", "term", "published_at")


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded message as the changes it carries (one for ``v: 1``), seqs consecutive."""

    changes: tuple[Message, ...]

    def __post_init__(self) -> None:
        if not self.changes:
            raise MessageError("bad_field", "a batch carries at least one change")

    @property
    def first(self) -> Message:
        """The change with the lowest seq."""
        return self.changes[0]

    @property
    def last(self) -> Message:
        """The change with the highest seq."""
        return self.changes[-1]

    @property
    def seqs(self) -> range:
        """The seqs the message covers."""
        return range(self.changes[0].seq, self.changes[-1].seq + 1)

    def __len__(self) -> int:
        return len(self.changes)


def change_obj(message: Message) -> dict[str, Any]:
    """The per-change fields of ``message`` as plain JSON-ready types (ejson documents)."""
    return {
        "kind": message.kind,
        "key": message.key,
        "doc": None if message.doc is None else to_ejson(message.doc),
        "op": message.op,
        "cluster_time": message.cluster_time,
        "ct": None if message.ct is None else list(message.ct),
        "refetch": message.refetch,
        "reason": message.reason,
        "id": None if message.doc_id is None else to_ejson(message.doc_id),
    }


def encode_change(message: Message, *, signed: bool = True) -> bytes:
    """One change of a batch as JSON; sorted-key JSON when it will be ``signed`` (the form
    both body and signature embed -- unsorted, a signature would not verify).

    Raises what orjson / extended JSON raise for a document that cannot be encoded
    (``TypeError``, ``ValueError``, ...): the publisher's poison-document fallback.
    """
    if message.kind not in BATCH_KINDS:
        raise ValueError(f"a batch carries upserts and deletes, not {message.kind!r}")
    return orjson.dumps(change_obj(message), option=orjson.OPT_SORT_KEYS if signed else 0)


def encode_batch_body(
    changes: Sequence[bytes],
    *,
    epoch: int,
    term: str,
    published_at: float,
    hmac_key: bytes | None = None,
) -> bytes:
    """A ``v: 2`` body without ``seq`` from :func:`encode_change` fragments, signed if keyed."""
    obj: dict[str, Any] = {
        "v": BATCH_VERSION,
        "epoch": epoch,
        "term": term,
        "published_at": published_at,
        "changes": [orjson.Fragment(c) for c in changes],
    }
    if hmac_key is not None:
        obj["sig"] = signature_of(hmac_key, obj)
    return orjson.dumps(obj)


def encode_batch(messages: Sequence[Message], *, hmac_key: bytes | None = None) -> bytes:
    """The complete wire form of ``messages`` (consecutive seqs; for tests and benchmarks).

    Envelope fields come from the first message; one message gives a ``v: 2`` batch of one
    (the watcher sends those as ``v: 1``, but replicas read both).
    """
    head = messages[0]
    body = encode_batch_body(
        [encode_change(m) for m in messages],
        epoch=head.epoch,
        term=head.term,
        published_at=head.published_at,
        hmac_key=hmac_key,
    )
    return splice_seq(body, head.seq)


def decode_batch(raw: bytes | str, *, hmac_key: bytes | None = None) -> Batch:
    """Parse and verify a ``v: 1`` or ``v: 2`` message; raise :class:`MessageError` only.

    Whatever the bytes, nothing but :class:`MessageError` escapes (like
    :func:`shared.messages.decode`).
    """
    return guarded_decode(_decode_batch, raw, hmac_key)


def _decode_batch(raw: bytes | str, hmac_key: bytes | None) -> Batch:
    obj = parse_message_json(raw, versions=(1, BATCH_VERSION))
    if hmac_key is not None:
        verify_signature(hmac_key, obj)
    if obj["v"] != BATCH_VERSION:
        return Batch((message_from_obj(obj),))
    changes = obj.get("changes")
    if not isinstance(changes, list) or not changes:
        raise MessageError("bad_field", "changes must be a non-empty list")
    envelope: dict[str, Any] = {name: obj[name] for name in _ENVELOPE if name in obj}
    if "seq" not in obj:
        raise MessageError("missing_field", "seq is missing")
    first = obj["seq"]
    if not isinstance(first, int) or isinstance(first, bool):
        raise MessageError("bad_field", f"seq must be an int >= 0, got {first!r:.80}")
    return Batch(tuple(_change(i, c, first, envelope) for i, c in enumerate(changes)))


def _change(index: int, change: Any, first: int, envelope: dict[str, Any]) -> Message:
    try:
        if not isinstance(change, dict):
            raise MessageError("bad_field", f"is {type(change).__name__}, not an object")
        kind = change.get("kind")
        if kind not in BATCH_KINDS:
            raise MessageError("bad_field", f"kind must be upsert or delete, got {kind!r:.40}")
        return message_from_obj({**change, **envelope, "seq": first + index})
    except MessageError as e:
        raise MessageError(e.reason, f"changes[{index}]: {e.detail}") from e


#: Largest body :func:`decode_batch` accepts (the single-message limit applies to a batch).
MAX_BATCH_BYTES: Final = MAX_MESSAGE_BYTES
