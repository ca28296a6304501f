"""The invalidation message: one JSON object per publish on ``{ns}:invalidations``.

This module is the single-change form (``v: 1``: every heartbeat and resync, and any
change published alone); several changes of one change-stream batch travel together as
``v: 2`` (:mod:`shared.batches`, which reuses the field rules here for each change).

Wire form (DESIGN.md)::

    {"v":1, "seq":int, "epoch":int, "term":str, "kind":"upsert"|"delete"|"resync"|"heartbeat",
     "key":str|null, "doc":object|null, "op":str|null, "cluster_time":float|null,
     "ct":[t,i]|null, "behind":float|null, "published_at":float, "refetch":bool, "reason":str|null,
     "id":any|null, "sig":hex (optional)}

``term`` is the leader term id, drawn at random when the lease is acquired: ``seq`` is a
counter *within* a term, and a replica told apart two terms that share an epoch number
(Redis lost the ``INCR``) by it. ``ct`` is the change event's exact ``clusterTime`` (the
BSON Timestamp as ``[seconds, increment]``): the per-document ordering key replicas use so
that a replay can never move a config backwards; heartbeats repeat the last change's.
``cluster_time`` is the same instant as float seconds, for humans and lag only. A
heartbeat's ``behind`` says how many seconds the published state trails real time (the
watcher may be replaying a backlog after a failover): a replica counts its cache as
current only as of ``now - behind``. Both new
fields are optional on decode (``term`` reads as ``""``, ``ct`` as null) so messages of an
older watcher still decode during a rolling upgrade.

``id`` is the document's ``_id`` (extended JSON) on upserts and deletes. A replica keeps an
``_id → key`` index, so a delete may name only the ``_id`` (``key`` null) when the watcher
cannot know the key (a delete event carries only ``documentKey``), and an upsert whose
``_id`` is cached under another key removes that stale entry (the key field changed).

The watcher encodes everything *but* ``seq`` with :func:`encode_body`; the fenced publish
script splices ``"seq":N`` in (same operation as :func:`splice_seq`), so a sequence
number is assigned and sent atomically. Replicas call :func:`decode`, which either
returns a valid :class:`Message` or raises :class:`MessageError` — never anything else,
whatever the bytes (pinned by a property test).

Documents travel as MongoDB *relaxed extended JSON*: ObjectId → ``{"$oid":…}``, datetime →
``{"$date":…}``, Decimal128 → ``{"$numberDecimal":…}``, binary → ``{"$binary":…}``,
non-finite floats → ``{"$numberDouble":…}``; :func:`decode` turns them back into the same
BSON types PyMongo returns from ``find`` (naive UTC datetimes), so a document that came
by message equals the one a reload reads. Field names starting with ``$`` in a stored
document are read as extended JSON and are not supported.

Signing: with a key, ``sig`` is HMAC-SHA256 over the sorted-key JSON of every field
except ``seq`` and ``sig``. ``seq`` is not covered (Redis's Lua has no SHA-256 to sign
after the script assigns it); someone who can publish without the key can at most
replay an earlier *signed* message under a new number. Since ``term`` and ``ct`` are
signed, such a replay names an old term (replicas take a term change at a seq that does not
follow theirs for a reset and reload) or an old cluster time (replicas never replace a
document with one from an older cluster time), and a replay at the very next seq is caught
when the genuine message with that seq arrives with a different body (``seq_conflict``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

import orjson

from shared.ejson import from_ejson, to_ejson
from shared.errors import MessageError

T = TypeVar("T")

__all__ = [
    "KINDS",
    "MAX_MESSAGE_BYTES",
    "VERSION",
    "Kind",
    "Message",
    "decode",
    "encode",
    "encode_body",
    "from_ejson",
    "message_from_obj",
    "parse_message_json",
    "signature_of",
    "splice_seq",
    "to_ejson",
    "verify_signature",
]

VERSION: Final = 1
#: Largest message :func:`decode` accepts; the watcher sends bigger documents key-only.
MAX_MESSAGE_BYTES: Final = 1024 * 1024

Kind = Literal["upsert", "delete", "resync", "heartbeat"]
KINDS: Final[frozenset[str]] = frozenset({"upsert", "delete", "resync", "heartbeat"})

_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded invalidation message (see the module docstring for the wire form)."""

    kind: Kind
    seq: int
    epoch: int
    key: str | None = None
    doc: dict[str, Any] | None = None
    op: str | None = None
    cluster_time: float | None = None
    published_at: float = 0.0
    refetch: bool = False
    reason: str | None = None
    doc_id: Any = None
    term: str = ""
    ct: tuple[int, int] | None = None
    behind: float | None = None

    def __post_init__(self) -> None:
        _check_shape(self)


def _check_shape(m: Message) -> None:
    if m.kind not in KINDS:
        raise MessageError("bad_field", f"kind must be one of {sorted(KINDS)}, got {m.kind!r}")
    if m.kind in ("upsert", "delete"):
        named = isinstance(m.key, str) and bool(m.key)
        if not named and not (m.kind == "delete" and m.key is None and m.doc_id is not None):
            raise MessageError(
                "bad_field", f"{m.kind} needs a non-empty string key (a delete: or an id)"
            )
        if m.kind == "delete" and m.doc is not None:
            raise MessageError("bad_field", "delete must not carry a doc")
        if m.kind == "upsert" and (m.doc is None) != m.refetch:
            raise MessageError("bad_field", "upsert carries a doc unless refetch is true")
    elif m.key is not None or m.doc is not None or m.doc_id is not None:
        raise MessageError("bad_field", f"{m.kind} must not carry a key, doc or id")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(cast(float, value))


def _signed_part(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in obj.items() if k not in ("seq", "sig")}, option=orjson.OPT_SORT_KEYS
    )


def signature_of(key: bytes, obj: dict[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the sorted-key JSON of every field of ``obj`` but seq and sig."""
    return hmac.new(key, _signed_part(obj), hashlib.sha256).hexdigest()


def encode_body(message: Message, *, hmac_key: bytes | None = None) -> bytes:
    """The message as JSON *without* ``seq`` (the publish script adds it), signed if keyed."""
    obj: dict[str, Any] = {
        "v": VERSION,
        "epoch": message.epoch,
        "term": message.term,
        "kind": message.kind,
        "key": message.key,
        "doc": None if message.doc is None else to_ejson(message.doc),
        "op": message.op,
        "cluster_time": message.cluster_time,
        "ct": None if message.ct is None else list(message.ct),
        "behind": message.behind,
        "published_at": message.published_at,
        "refetch": message.refetch,
        "reason": message.reason,
        "id": None if message.doc_id is None else to_ejson(message.doc_id),
    }
    if hmac_key is not None:
        obj["sig"] = signature_of(hmac_key, obj)
    return orjson.dumps(obj)


def splice_seq(body: bytes, seq: int) -> bytes:
    """What the publish script does: put ``"seq":N`` in front of the body's fields."""
    return b'{"seq":%d,' % seq + body[1:]


def encode(message: Message, *, hmac_key: bytes | None = None) -> bytes:
    """The complete wire form, ``seq`` included (for tests, tools and benchmarks)."""
    return splice_seq(encode_body(message, hmac_key=hmac_key), message.seq)


def decode(raw: bytes | str, *, hmac_key: bytes | None = None) -> Message:
    """Parse and verify one message; raise :class:`MessageError` for anything invalid.

    Nothing else escapes, whatever the bytes: an unexpected failure inside the decoder is
    reported as ``bad_field`` naming the exception, so a hostile publish can never take a
    replica down.
    """
    return guarded_decode(_decode, raw, hmac_key)


def guarded_decode(
    decoder: Callable[[bytes | str, bytes | None], T], raw: bytes | str, hmac_key: bytes | None
) -> T:
    """``decoder(raw, hmac_key)``, with any failure but :class:`MessageError` turned into one.

    The one place that keeps a hostile publish from escaping a decoder as anything else:
    the exception is named (``bad_field``) and chained.
    """
    try:
        return decoder(raw, hmac_key)
    except MessageError:
        raise
    except Exception as e:
        raise MessageError("bad_field", f"undecodable message ({e!r:.120})") from e


def _decode(raw: bytes | str, hmac_key: bytes | None) -> Message:
    obj = parse_message_json(raw, versions=(VERSION,))
    if hmac_key is not None:
        verify_signature(hmac_key, obj)
    return message_from_obj(obj)


def parse_message_json(raw: bytes | str, *, versions: tuple[int, ...]) -> dict[str, Any]:
    """The message as a JSON object of one of ``versions``; :class:`MessageError` otherwise."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError("oversized", f"{len(raw)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MessageError("bad_json", str(e)) from e
    if not isinstance(obj, dict):
        raise MessageError("not_an_object", f"top level is {type(obj).__name__}")
    v = obj.get("v")
    if not _is_int(v) or v not in versions:
        hint = " (a batch: read it with shared.batches.decode_batch)" if v == 2 else ""
        raise MessageError(
            "unknown_version", f"v={v!r:.20}, this reader takes v in {list(versions)}{hint}"
        )
    return cast(dict[str, Any], obj)


def verify_signature(key: bytes, obj: dict[str, Any]) -> None:
    """Check ``obj``'s ``sig`` against ``key``; :class:`MessageError` when it does not match."""
    sig = obj.get("sig")
    if sig is None:
        raise MessageError("unsigned", "an HMAC key is configured but the message has no sig")
    try:
        expected = signature_of(key, obj)
    except orjson.JSONEncodeError as e:  # e.g. nested deeper than the encoder goes
        raise MessageError("bad_field", f"cannot re-encode to verify: {e}") from e
    if not isinstance(sig, str) or not hmac.compare_digest(sig, expected):
        raise MessageError("bad_signature", "sig does not match the configured HMAC key")


def _field(obj: dict[str, Any], name: str, ok: Any, what: str, *, required: bool = True) -> Any:
    if name not in obj:
        if required:
            raise MessageError("missing_field", f"{name} is missing")
        return None
    value = obj[name]
    if not ok(value):
        raise MessageError("bad_field", f"{name} must be {what}, got {value!r:.80}")
    return value


def message_from_obj(obj: dict[str, Any]) -> Message:
    """A :class:`Message` from its parsed JSON fields, each validated; :class:`MessageError`.

    The common case -- every field well-formed -- is checked in one pass of plain type
    tests (a replica decodes every change of a burst); anything else takes the field-by-
    field path that names what is wrong. The fast path only ever accepts what the other
    would (pinned by a property test).
    """
    fields = _fast_fields(obj)
    if fields is None:
        fields = _checked_fields(obj)
    return _build(obj, *fields)


_Fields = tuple[Any, ...]


def _num(v: object) -> bool:
    kind = type(v)
    return (kind is int or kind is float) and math.isfinite(cast(float, v))


def _fast_fields(obj: dict[str, Any]) -> _Fields | None:
    """The validated fields if every one is plainly well-formed, else None."""
    g = obj.get
    seq, epoch, kind = g("seq"), g("epoch"), g("kind")
    if type(seq) is not int or type(epoch) is not int or type(kind) is not str:
        return None
    if not (0 <= seq <= _INT64_MAX and 0 <= epoch <= _INT64_MAX) or kind not in KINDS:
        return None
    if not ("key" in obj and "doc" in obj and "op" in obj and "cluster_time" in obj):
        return None
    key, doc, op, cluster_time = obj["key"], obj["doc"], obj["op"], obj["cluster_time"]
    published_at, term, ct = g("published_at"), g("term", ""), g("ct")
    behind, refetch, reason = g("behind"), g("refetch", False), g("reason")
    ok = (
        (key is None or type(key) is str)
        and (doc is None or type(doc) is dict)
        and (op is None or type(op) is str)
        and (cluster_time is None or _num(cluster_time))
        and _num(published_at)
        and type(term) is str
        and len(term) <= 64
        and (ct is None or _is_timestamp(ct))
        and (behind is None or (_num(behind) and behind >= 0))
        and type(refetch) is bool
        and (reason is None or type(reason) is str)
    )
    if not ok:
        return None
    return (
        seq,
        epoch,
        kind,
        key,
        doc,
        op,
        cluster_time,
        published_at,
        term,
        ct,
        behind,
        refetch,
        reason,
    )


def _checked_fields(obj: dict[str, Any]) -> _Fields:
    """The fields one by one, raising :class:`MessageError` naming the first bad one."""
    seq = _field(obj, "seq", lambda v: _is_int(v) and 0 <= v <= _INT64_MAX, "an int >= 0")
    epoch = _field(obj, "epoch", lambda v: _is_int(v) and 0 <= v <= _INT64_MAX, "an int >= 0")
    kind = _field(
        obj, "kind", lambda v: isinstance(v, str) and v in KINDS, f"one of {sorted(KINDS)}"
    )
    key = _field(obj, "key", lambda v: v is None or isinstance(v, str), "a string or null")
    raw_doc = _field(obj, "doc", lambda v: v is None or isinstance(v, dict), "an object or null")
    op = _field(obj, "op", lambda v: v is None or isinstance(v, str), "a string or null")
    cluster_time = _field(
        obj, "cluster_time", lambda v: v is None or _is_number(v), "a number or null"
    )
    published_at = _field(obj, "published_at", _is_number, "a number")
    term = _field(
        obj, "term", lambda v: isinstance(v, str) and len(v) <= 64, "a string", required=False
    )
    ct = _field(
        obj, "ct", lambda v: v is None or _is_timestamp(v), "[t, i] or null", required=False
    )
    behind = _field(
        obj,
        "behind",
        lambda v: v is None or (_is_number(v) and v >= 0),
        "a number >= 0 or null",
        required=False,
    )
    refetch = _field(obj, "refetch", lambda v: isinstance(v, bool), "a bool", required=False)
    reason = _field(
        obj, "reason", lambda v: v is None or isinstance(v, str), "a string", required=False
    )
    return (
        seq,
        epoch,
        kind,
        key,
        raw_doc,
        op,
        cluster_time,
        published_at,
        term,
        ct,
        behind,
        refetch,
        reason,
    )


def _build(
    obj: dict[str, Any],
    seq: int,
    epoch: int,
    kind: Kind,
    key: str | None,
    raw_doc: dict[str, Any] | None,
    op: str | None,
    cluster_time: float | None,
    published_at: float,
    term: str | None,
    ct: list[int] | None,
    behind: float | None,
    refetch: bool | None,
    reason: str | None,
) -> Message:
    raw_id = obj.get("id")
    # An upsert's id is its document's _id: when the two read the same, convert it once.
    shared_id = type(raw_id) is dict and raw_doc is not None and raw_id == raw_doc.get("_id")
    try:
        doc = None if raw_doc is None else from_ejson(raw_doc)
        held = doc.get("_id") if shared_id and isinstance(doc, dict) else None
        if held is not None and type(held) is not dict and type(held) is not list:
            doc_id = held  # an ObjectId (immutable), the very value the document holds
        else:
            doc_id = None if raw_id is None else from_ejson(raw_id)
    except (RecursionError, Exception) as e:  # bson raises many types for bad extended JSON
        raise MessageError("bad_field", f"doc or id is not valid extended JSON: {e!r:.120}") from e
    return Message(
        kind=kind,
        seq=seq,
        epoch=epoch,
        key=key,
        doc=doc,
        op=op,
        cluster_time=None if cluster_time is None else float(cluster_time),
        published_at=float(published_at),
        refetch=bool(refetch),
        reason=reason,
        doc_id=doc_id,
        term=term or "",
        ct=None if ct is None else (int(ct[0]), int(ct[1])),
        behind=None if behind is None else float(behind),
    )


def _is_timestamp(value: object) -> bool:
    """``[t, i]``: two unsigned 32-bit ints, as in a BSON Timestamp."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_int(part) and 0 <= part < 2**32 for part in value)
    )
