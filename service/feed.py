"""The port the subscriber reads invalidations through (Redis pub/sub in production).

Why a module of its own: :mod:`service.subscribing` implements the rules against this
Protocol, :mod:`service.redis_feed` implements it on redis-py, and unit tests script it.
Invariant every implementation keeps: failures of the transport surface only as
:class:`~service.errors.FeedLost`, and a (re)confirmed subscription as :data:`SUBSCRIBED`.
"""

from __future__ import annotations

from typing import Final, Protocol

#: What :meth:`Feed.receive` returns when the channel subscription was (re)confirmed.
SUBSCRIBED: Final = "subscribed"
#: What :meth:`Feed.receive` returns once everything published before the last
#: :meth:`Feed.position` or :meth:`Feed.mark` has been delivered (see service.snapshot_tail).
CAUGHT_UP: Final = "caught-up"


class Feed(Protocol):
    """The invalidation channel and the counters next to it (Redis in production)."""

    async def open(self) -> None:
        """Subscribe and return once the subscription is confirmed; raise FeedLost."""
        ...

    async def receive(self, wait_s: float) -> bytes | str | None:
        """A message body, :data:`SUBSCRIBED`, or None after ``wait_s`` seconds; raise FeedLost."""
        ...

    async def position(self) -> tuple[int, int | None, str | None]:
        """``({ns}:seq, {ns}:epoch, {ns}:term)`` now (0, None, None when unset); FeedLost.

        Also marks the point: :data:`CAUGHT_UP` follows once the subscription delivered
        everything published before it (a feed that cannot tell never sends it)."""
        ...

    async def mark(self) -> None:
        """Mark the point now (as :meth:`position` does, without reading); FeedLost."""
        ...

    async def close(self) -> None:
        """Drop the subscription (idempotent, never raises)."""
        ...
