"""Every error the watcher raises on purpose, in one tree.

Library errors (redis-py, PyMongo) are caught in the adapter that talks to the library and
re-raised as one of these with ``raise ... from e``, so the loops above the adapters decide
what to do from the *kind* of failure, never from a driver's class::

    SccError                      (shared.errors)
    ├── StoreUnavailable          Redis unreachable, timed out or refused (shared; retried)
    └── WatcherError
        ├── NotLeader             this instance holds no valid lease (or its deadline passed)
        │   └── FencedOut         Redis refused a fenced write: another term owns the lease
        ├── CorruptToken          the stored resume token cannot be parsed (→ resync)
        ├── StreamRestart         the stream must restart from "now" after a resync (.reason)
        │   ├── HistoryLost       the server refused to resume from the token (286/260/280...)
        │   └── StreamInvalidated invalidate / drop / rename / dropDatabase was seen
        └── SourceUnavailable     MongoDB failed (network, step-down, ...); retried with backoff

``StreamRestart.reason`` is a bounded label (:data:`RESYNC_REASONS`) used in the
``resync`` message and in ``scc_watcher_resyncs_total{reason}``.
"""

from __future__ import annotations

from typing import Final

from shared.errors import SccError, StoreUnavailable

__all__ = [
    "RESYNC_REASONS",
    "CorruptToken",
    "FencedOut",
    "HistoryLost",
    "NotLeader",
    "SourceUnavailable",
    "StoreUnavailable",
    "StreamInvalidated",
    "StreamRestart",
    "WatcherError",
]

#: Every reason a watcher publishes ``resync`` for (a bounded metric label).
RESYNC_REASONS: Final = frozenset(
    {
        "no_token",
        "corrupt_token",
        "history_lost",
        "invalid_token",
        "token_refused",
        "invalidate",
        "drop",
        "rename",
        "dropDatabase",
    }
)


class WatcherError(SccError):
    """Root of the watcher's own errors."""


class NotLeader(WatcherError):
    """This instance does not hold the lease, or its local lease deadline has passed."""


class FencedOut(NotLeader):
    """A fenced Lua script refused the write: ``{ns}:leader``/``{ns}:epoch`` name another term."""


class CorruptToken(WatcherError):
    """``{ns}:resume`` exists but its token cannot be parsed as a resume-token document."""


class StreamRestart(WatcherError):
    """The change stream cannot continue; publish ``resync`` and restart it from now."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in RESYNC_REASONS:
            raise ValueError(f"unknown resync reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class HistoryLost(StreamRestart):
    """The server cannot (or will not) resume from the token: 286, 260, 280, or says so."""


class StreamInvalidated(StreamRestart):
    """An ``invalidate``, ``drop``, ``rename`` or ``dropDatabase`` event ended the stream."""


class SourceUnavailable(WatcherError):
    """MongoDB failed in a way that retrying later may fix (network, step-down, timeout)."""
