"""Bad input at volume: payloads for the invalidation channel, and requests for ``/events/blob``.

Why it exists: scenario 7 must throw everything a broken or hostile peer could send at
the replicas and then account for every piece of it.

* :func:`channel_payloads` builds N payloads from a seeded RNG -- garbage bytes, broken
  JSON, non-objects, wrong versions, unsigned or wrongly signed messages, messages too
  large to read, correctly signed ones with bad fields, and correctly signed *valid-looking*
  messages out of sequence (far-ahead seq, stale seq, lower epoch, heartbeat ahead). Each
  comes with the rejection reason the replicas must count for it, computed with the
  replicas' own decoder, so "every rejection counted" is an exact comparison.
* :func:`request_strategy` is a hypothesis strategy of HTTP requests derived from the
  request-body schemas the replica publishes in ``/openapi.json`` (a small JSON-Schema
  → strategy translation: ``type``, ``properties``/``required``, ``anyOf``, ``const``,
  ``minLength``, ``items``), with realistic values mixed in for the fields that steer
  routing (subjects of real containers, known ``source_id``s, the blob event type),
  then mutated (required fields dropped, values swapped for random JSON), plus raw
  garbage, wrong content types, wrong or missing ingest tokens, and hostile batches
  (events nested up to 600 deep, integers at and beyond the 64-bit range).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from shared.batches import decode_batch
from shared.errors import MessageError
from shared.messages import MAX_MESSAGE_BYTES, Kind, Message, encode_body, splice_seq
from tests.chaos.profile import INGEST_TOKEN

#: Keys that forged messages name; none exists in MongoDB, so each must answer 404 at the end.
FORGED_KEYS: Final = tuple(f"forged-{i:02d}" for i in range(8))
#: How many of the payloads are over the decoder's size limit (they are slow to publish).
HUGE_EVERY: Final = 97
#: Nesting of the "deep" payloads: past orjson.dumps's limit (254), which the decoder once
#: crashed on when re-encoding to verify a signature.
DEEP: Final = 300

# ----------------------------------------------------------------- channel payloads


@dataclass(frozen=True, slots=True)
class Payload:
    """One message the harness publishes, and the rejection reason it must be counted under."""

    kind: str
    raw: bytes
    reason: str | None  # None: it decodes (a valid-looking message out of sequence)


def expected_reason(raw: bytes, hmac_key: bytes) -> str | None:
    """The ``MessageError`` reason the replicas' decoder gives ``raw`` (None if it decodes).

    A decoder that raises anything else is a bug (it kills the subscriber): the reason is
    then ``crash:<exception type>``, which no replica can count.
    """
    try:
        decode_batch(raw, hmac_key=hmac_key)
    except MessageError as e:
        return e.reason
    except Exception as e:  # the decoder's contract is MessageError only; report, do not stop
        return f"crash:{type(e).__name__}"
    return None


def _sign(obj: dict[str, Any], key: bytes) -> dict[str, Any]:
    body = {k: v for k, v in obj.items() if k not in ("seq", "sig")}
    signed = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return {**obj, "sig": hmac.new(key, signed, hashlib.sha256).hexdigest()}


def _message(kind: str, *, seq: int, epoch: int, key: str | None, hmac_key: bytes) -> bytes:
    doc = {"source_id": key, "forged": True} if kind == "upsert" else None
    message = Message(
        kind=cast(Kind, kind), seq=0, epoch=epoch, key=key, doc=doc, published_at=time.time()
    )
    body = encode_body(message, hmac_key=hmac_key)
    return splice_seq(body, seq)


class _Maker:
    """Builds one payload of each kind from a seeded RNG and the channel's current position."""

    def __init__(self, rng: random.Random, key: bytes, seq: int, epoch: int) -> None:
        self.rng, self.key, self.seq, self.epoch = rng, key, seq, epoch

    def kinds(self) -> list[tuple[str, Callable[[], bytes]]]:
        """``(kind, make)`` pairs; each ``make()`` returns fresh bytes."""
        return [
            ("garbage", lambda: self.rng.randbytes(self.rng.randint(1, 300))),
            ("text", self.text),
            ("truncated", lambda: self.forged("upsert", self.seq)[: self.rng.randint(1, 60)]),
            (
                "not_object",
                lambda: self.rng.choice([b"null", b"[]", b"42", b'"x"', b"[1]", b"true"]),
            ),
            ("wrong_version", lambda: self.signed(v=self.rng.choice([0, 2, "1", None, 1.0]))),
            ("unsigned", lambda: self.signed(drop_sig=True)),
            ("bad_signature", lambda: self.signed(sig=self.rng.randbytes(32).hex())),
            ("other_key", lambda: self.signed(key=b"not-the-fleet-key-0123456789")),
            ("bad_field", lambda: _signed_field(self.rng, self.key, self.seq, self.epoch)),
            ("ahead", lambda: self.forged("upsert", self.seq + self.rng.randint(1000, 10**6))),
            ("stale", lambda: self.forged("upsert", self.rng.randint(0, max(0, self.seq - 1)))),
            ("old_epoch", lambda: self.forged("delete", self.seq + 1, max(0, self.epoch - 1))),
            (
                "heartbeat_ahead",
                lambda: self.forged("heartbeat", self.seq + self.rng.randint(1, 999)),
            ),
            ("deep", lambda: b'{"v":1,"sig":"00","x":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ]

    def text(self) -> bytes:
        """Printable junk made of JSON punctuation."""
        chars = '{}[]",:0123456789abcxyz \\'
        return "".join(self.rng.choice(chars) for _ in range(self.rng.randint(1, 80))).encode()

    def forged(self, kind: str, seq: int, epoch: int | None = None) -> bytes:
        """A correctly signed message of ``kind`` at ``seq`` about a forged key."""
        key = None if kind == "heartbeat" else self.rng.choice(FORGED_KEYS)
        epoch = self.epoch if epoch is None else epoch
        return _message(kind, seq=seq, epoch=epoch, key=key, hmac_key=self.key)

    def signed(self, *, key: bytes | None = None, **change: Any) -> bytes:
        """A forged upsert signed with ``key`` (default: the fleet's), then ``change``d."""
        return _with(self.rng, key or self.key, self.seq, self.epoch, **change)


def channel_payloads(
    rng: random.Random, n: int, *, hmac_key: bytes, seq: int, epoch: int
) -> Iterator[Payload]:
    """``n`` bad payloads, one at a time (module docstring); ``seq``/``epoch`` are the
    channel's current ones. Generated lazily: the huge ones are a megabyte each."""
    makers = _Maker(rng, hmac_key, seq, epoch).kinds()
    for i in range(n):
        if i % HUGE_EVERY == HUGE_EVERY - 1:
            kind, raw = "huge", b'{"v":1,"pad":"' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}'
        else:
            kind, make = rng.choice(makers)
            raw = make()
        yield Payload(kind, raw, expected_reason(raw, hmac_key))


def _base(rng: random.Random, seq: int, epoch: int) -> dict[str, Any]:
    return {
        "seq": seq + rng.randint(1000, 10**6),
        "v": 1,
        "epoch": epoch,
        "kind": "upsert",
        "key": rng.choice(FORGED_KEYS),
        "doc": {"source_id": "forged"},
        "op": "update",
        "cluster_time": None,
        "published_at": time.time(),
        "refetch": False,
        "reason": None,
    }


def _with(rng: random.Random, key: bytes, seq: int, epoch: int, **change: Any) -> bytes:
    obj = _sign(_base(rng, seq, epoch), key)
    if change.pop("drop_sig", False):
        obj.pop("sig")
    if "v" in change and change["v"] is None:
        change.pop("v")
        obj.pop("v")
    obj.update(change)
    return orjson.dumps(obj)


def _signed_field(rng: random.Random, key: bytes, seq: int, epoch: int) -> bytes:
    obj = _base(rng, seq, epoch)
    field = rng.choice(["seq", "epoch", "kind", "key", "doc", "published_at", "refetch"])
    values: list[Any] = [-1, "x", [], {"$date": "not a date"}, None, 1.5, True, 2**63]
    if rng.random() < 0.3:
        obj.pop(field)
    else:
        obj[field] = rng.choice(values)
    return orjson.dumps(_sign(obj, key))


# -------------------------------------------------------------------- HTTP fuzzing


@dataclass(frozen=True, slots=True)
class FuzzRequest:
    """One generated ``POST /events/blob``."""

    body: bytes
    content_type: str | None
    headers: dict[str, str]
    params: dict[str, str]
    shape: str


_JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON_VALUES: Final = st.recursive(
    _JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def from_schema(
    schema: dict[str, Any], hints: dict[str, st.SearchStrategy[Any]], name: str = ""
) -> st.SearchStrategy[Any]:
    """A strategy of JSON values valid for ``schema`` (the subset pydantic emits here).

    ``hints`` maps a property name to realistic values, mixed in with the schema's own.
    """
    own = _own(schema, hints)
    hint = hints.get(name)
    return own if hint is None else st.one_of(hint, own)


def _own(
    schema: dict[str, Any], hints: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    if "anyOf" in schema:
        return st.one_of([from_schema(s, hints) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(min_size=int(schema.get("minLength", 0)), max_size=40)
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), hints), min_size=0, max_size=4)
    if kind == "object":
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, hints, k) for k, v in props.items() if k in required},
            optional={k: from_schema(v, hints, k) for k, v in props.items() if k not in required},
        )
    return JSON_VALUES


@st.composite
def _mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    value = draw(valid)
    targets = value if isinstance(value, list) else [value]
    for item in targets:
        if isinstance(item, dict) and item:
            field = draw(st.sampled_from(sorted(item)))
            if draw(st.booleans()):
                del item[field]
            else:
                item[field] = draw(JSON_VALUES)
    return value


def routing_hints(
    containers: list[str], source_ids: list[str]
) -> dict[str, st.SearchStrategy[Any]]:
    """Realistic values for the fields that decide where an event goes."""
    container = st.sampled_from(containers) | st.text(min_size=1, max_size=12)
    path = st.sampled_from(
        ["incoming/a.csv", "incoming/daily/b.csv", "x.json", "deep/er/c.parquet"]
    )
    subject = st.builds(
        lambda c, p: f"/blobServices/default/containers/{c}/blobs/{p}", container, path
    )
    source_id = st.sampled_from(source_ids) | st.text(max_size=12)
    event_type = st.sampled_from(["Microsoft.Storage.BlobCreated", "Microsoft.Storage.BlobDeleted",
                                  "Microsoft.EventGrid.SubscriptionValidationEvent"])  # fmt: skip
    url = st.builds(lambda c, p: f"https://acct.blob.core.windows.net/{c}/{p}", container, path)
    data = st.fixed_dictionaries(
        {},
        optional={
            "url": url | st.text(max_size=20),
            "source_id": source_id,
            "validationCode": st.text(min_size=1, max_size=8),
        },
    )
    return {
        "subject": subject,
        "eventType": event_type,
        "type": event_type,
        "data": data,
        "sourceid": source_id,
        "source_id": source_id,
    }


def request_strategy(
    openapi: dict[str, Any], hints: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[FuzzRequest]:
    """Requests from the ``POST /events/blob`` body schemas of ``openapi`` (module docstring)."""
    content: dict[str, Any] = openapi["paths"]["/events/blob"]["post"]["requestBody"]["content"]
    bodies: list[st.SearchStrategy[tuple[str, str, bytes]]] = []
    for media, spec in sorted(content.items()):
        valid = from_schema(spec["schema"], hints)
        bodies.append(st.tuples(st.just(media), st.just("schema"), valid.map(orjson.dumps)))
        bodies.append(
            st.tuples(st.just(media), st.just("mutated"), _mutated(valid).map(orjson.dumps))
        )
    media_any = (
        st.sampled_from([*sorted(content), "text/plain", "application/json; charset=utf-8"])
        | st.none()
    )
    bodies.append(st.tuples(media_any.map(str), st.just("garbage"), st.binary(max_size=200)))
    bodies.append(st.tuples(media_any.map(str), st.just("json"), JSON_VALUES.map(orjson.dumps)))
    bodies.append(st.tuples(st.just("application/json"), st.just("hostile"), _hostile_bodies()))
    token = st.sampled_from(["good", "good", "good", "good", "query", "aeg", "missing", "wrong"])
    declare = st.sampled_from([True, True, True, True, False])  # a missing type is a 415
    return st.builds(_request, st.one_of(bodies), token, declare)


def _hostile_bodies() -> st.SearchStrategy[bytes]:
    """Event Grid batches carrying what the JSON parser accepts but a store may not.

    Nesting from 20 to 600 levels around ``data`` (past orjson's 254 and the replica's
    limit of 32), and integers just inside and outside the 64-bit range.
    """
    base = (
        b'{"id":"h-%d","subject":"/blobServices/default/containers/shared-0/blobs/x",'
        b'"eventType":"Microsoft.Storage.BlobCreated","eventTime":"2026-12-02T00:00:00Z",'
        b'"data":%s}'
    )
    deep = st.integers(20, 600).map(lambda n: b"[" * n + b"]" * n)
    wide = st.sampled_from([2**63 - 1, 2**64 - 1, 2**64, -(2**63) - 1, 10**40]).map(
        lambda n: b'{"size":%d}' % n
    )
    event = st.builds(lambda i, data: base % (i, data), st.integers(0, 10**6), deep | wide)
    return st.lists(event, min_size=1, max_size=3).map(lambda items: b"[" + b",".join(items) + b"]")


def _request(body: tuple[str, str, bytes], token: str, declare_type: bool) -> FuzzRequest:
    media, shape, raw = body
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if token == "good":
        headers["X-Ingest-Token"] = INGEST_TOKEN
    elif token == "aeg":
        headers["aeg-sas-key"] = INGEST_TOKEN
    elif token == "query":
        params["token"] = INGEST_TOKEN
    elif token == "wrong":
        headers["X-Ingest-Token"] = "wrong-token-0123456789"
    content_type = media if declare_type and media != "None" else None
    return FuzzRequest(raw, content_type, headers, params, f"{shape}/{token}")


def run_fuzz(
    strategy: st.SearchStrategy[FuzzRequest],
    send: Callable[[FuzzRequest], None],
    *,
    examples: int,
    seed: int,
) -> None:
    """Send ``examples`` generated requests through ``send`` (generate phase only, seeded).

    No shrinking: every request goes to a live fleet, so ``send`` records failures
    itself instead of raising, and the whole budget is always spent.
    """

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(request: FuzzRequest) -> None:
        send(request)

    fuzz()
