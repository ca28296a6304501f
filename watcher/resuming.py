"""The resume-token store: where the leader records how far it has published.

Invariant: the token in ``{ns}:resume`` always points at or before the first change not yet
published, because the follower saves ``stream.resume_token`` only *after* publishing what
it covers, and only through the fenced ``SAVE_TOKEN`` script (a deposed leader cannot move
it). The hash holds ``token`` (the token document as canonical extended JSON, so every BSON
type survives), ``epoch``, ``cluster_time`` (float seconds, see
:func:`watcher.publishing.cluster_seconds`), ``saved_at`` (unix seconds) and ``saved_by``.

A token that cannot be parsed raises :class:`CorruptToken`; the follower answers with a
``resync`` and a fresh stream, never by silently starting from now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from redis.exceptions import RedisError

from shared.errors import StoreUnavailable
from shared.keys import Keys
from shared.scripts import FENCED_OUT, SAVE_TOKEN
from watcher.errors import CorruptToken, FencedOut

ResumeToken = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredToken:
    """What ``{ns}:resume`` held when it was read."""

    token: dict[str, Any]
    epoch: int | None
    cluster_time: float | None
    saved_at: float | None
    saved_by: str


class TokenStore(Protocol):
    """Where the resume token lives (Redis in production, a dict in unit tests)."""

    async def load(self) -> StoredToken | None:
        """The stored token, None if there is none; raises :class:`CorruptToken`."""
        ...

    async def save(
        self, token: ResumeToken, *, epoch: int, cluster_time: float | None, saved_at: float
    ) -> None:
        """Store ``token`` for term ``epoch``; raises :class:`FencedOut` if not ours."""
        ...


def dump_token(token: ResumeToken) -> str:
    """The token as canonical extended JSON (lossless for every BSON type)."""
    return json_util.dumps(dict(token), json_options=CANONICAL_JSON_OPTIONS)


def parse_token(text: str) -> dict[str, Any]:
    """Inverse of :func:`dump_token`; :class:`CorruptToken` if it is not a token document."""
    try:
        value = json_util.loads(text, json_options=CANONICAL_JSON_OPTIONS)
    except Exception as e:  # bson/json raise several types for malformed input
        raise CorruptToken(f"token is not extended JSON: {e!r:.200}") from e
    if not isinstance(value, dict) or not value:
        raise CorruptToken(f"token must be a non-empty document, got {text[:80]!r}")
    return value


def _text(raw: Mapping[Any, Any], field: str) -> str:
    value = raw.get(field.encode())
    return "" if value is None else value.decode("utf-8", "replace")


def _number(raw: Mapping[Any, Any], field: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(_text(raw, field))
    except ValueError:
        return None


class RedisTokenStore:
    """:class:`TokenStore` on the ``{ns}:resume`` hash, written by the fenced script."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, instance_id: str) -> None:
        self._redis = redis
        self._key = keys.resume
        self._fence_keys = [keys.leader, keys.epoch, keys.resume]
        self._id = instance_id
        self._save = redis.register_script(SAVE_TOKEN)

    async def load(self) -> StoredToken | None:
        """``HGETALL {ns}:resume`` → :class:`StoredToken`."""
        try:
            raw: dict[Any, Any] = await self._redis.hgetall(self._key)
        except RedisError as e:
            raise StoreUnavailable(f"reading {self._key} failed: {e}") from e
        if not raw:
            return None
        text = _text(raw, "token")
        if not text:
            raise CorruptToken(f"{self._key} has no 'token' field")
        return StoredToken(
            token=parse_token(text),
            epoch=_number(raw, "epoch", int),
            cluster_time=_number(raw, "cluster_time", float),
            saved_at=_number(raw, "saved_at", float),
            saved_by=_text(raw, "saved_by"),
        )

    async def save(
        self, token: ResumeToken, *, epoch: int, cluster_time: float | None, saved_at: float
    ) -> None:
        """``SAVE_TOKEN`` (fenced)."""
        args: list[str | int] = [
            self._id,
            epoch,
            dump_token(token),
            "" if cluster_time is None else repr(cluster_time),
            repr(saved_at),
        ]
        try:
            result = await self._save(keys=self._fence_keys, args=args)
        except RedisError as e:
            raise StoreUnavailable(f"saving the resume token failed: {e}") from e
        if int(result) == FENCED_OUT:
            raise FencedOut(f"token save refused: epoch {epoch} no longer holds the lease")
