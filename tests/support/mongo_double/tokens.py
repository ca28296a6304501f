"""Cluster time and resume tokens: positions in the double's history.

A resume token is an opaque hex string that orders exactly like the position it encodes
(cluster time, then rank within that time), and carries the id of the deployment that
issued it, as a real token carries a collection UUID.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bson.timestamp import Timestamp

from .errors import CommandError

RANK_START = 0  # before every entry at this cluster time (startAtOperationTime)
RANK_EVENT = 1  # the entry itself
RANK_INVALIDATE = 2  # the invalidate derived from a drop / dropDatabase entry
RANK_HWM = 3  # after everything at this cluster time (high-water mark)
_TOKEN_PREFIX = "82"
_TOKEN_LENGTH = 28  # prefix, time, increment, rank, deployment id


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """A point in the history; resume tokens encode one, ordered like their ``_data``."""

    time: int
    inc: int
    rank: int

    @classmethod
    def at(cls, ts: Timestamp, rank: int) -> Position:
        return cls(ts.time, ts.inc, rank)

    def token(self, deployment: str) -> dict[str, Any]:
        """The resume token for this position (opaque hex, ordered like positions)."""
        return {"_data": f"{_TOKEN_PREFIX}{self.time:08X}{self.inc:08X}{self.rank:02X}{deployment}"}


def parse_token(token: Any, option: str) -> tuple[Position, str]:
    """Decode a resume token given as ``option`` into (position, deployment id).

    FailedToParse (9) when it is not a hex ``_data`` string, InvalidResumeToken (260) when it
    is hex but not a token this double could have issued.
    """
    if not isinstance(token, dict):
        raise CommandError(9, f"$changeStream.{option} must be an object, a resume token")
    data = token.get("_data")
    if not isinstance(data, str):
        raise CommandError(9, f"{option}: a resume token needs a string '_data' field")
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        raise CommandError(9, f"{option}: resume token '_data' must be a hex string") from None
    if len(data) != _TOKEN_LENGTH or not data.upper().startswith(_TOKEN_PREFIX) or raw[9] > 3:
        raise CommandError(260, f"{option}: {data!r} is not a resume token of this deployment")
    position = Position(int(data[2:10], 16), int(data[10:18], 16), raw[9])
    return position, data[20:].upper()


class Clock:
    """The cluster clock: strictly increasing Timestamps (seconds, increment)."""

    def __init__(self) -> None:
        self.last = Timestamp(int(time.time()), 1)

    def tick(self) -> Timestamp:
        now = int(time.time())
        if now > self.last.time:
            self.last = Timestamp(now, 1)
        else:
            self.last = Timestamp(self.last.time, self.last.inc + 1)
        return self.last

    def high_water_mark(self) -> Position:
        return Position.at(self.last, RANK_HWM)
