"""What the subscriber knows and how it paces itself: state for health, metrics and Redis.

Why a module of its own: the HTTP layer, the metrics and the replica heartbeat hash read
:class:`SubscriberState`, and :mod:`service.subscribing` writes it; keeping the data and
the pacing rules (reconnect backoff, the bad-message reload budget) here keeps the
subscriber itself about its protocol.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from service.errors import RESYNC_REASONS
from shared.errors import MESSAGE_ERROR_REASONS

#: Longest wait between reconnect attempts while Redis is unreachable.
MAX_BACKOFF_S: Final = 5.0
#: Silence doubles the resubscribe delay this many times at most (no watcher running).
MAX_SILENT_DOUBLINGS: Final = 4
#: Bad messages reload the cache at most this many times per :data:`BAD_MESSAGE_WINDOW_S`;
#: beyond that they are only counted (they prove nothing about lost messages: seq does).
BAD_MESSAGE_RELOADS: Final = 3
BAD_MESSAGE_WINDOW_S: Final = 60.0


@dataclass
class SubscriberState:
    """What the subscriber knows, for health, metrics and the heartbeat hash."""

    subscribed: bool = False
    redis_ok: bool = True
    stream_active: bool = False
    syncing: bool = False
    #: Why the cache is known to have missed something, until a reload completes.
    pending_resync: str | None = None
    last_seq: int | None = None
    epoch: int | None = None
    term: str | None = None
    last_message_at: float | None = None  # unix seconds
    last_message_mono: float | None = None
    lag_seconds: float | None = None
    #: How far the watcher said its published state trailed, at the last heartbeat.
    behind_s: float | None = None
    warmed_at: float | None = None  # unix seconds of the last completed load
    last_error: str = ""
    resyncs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESYNC_REASONS, 0))
    rejected: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(sorted(MESSAGE_ERROR_REASONS), 0)
    )
    duplicates: int = 0
    #: Messages that arrived after a load or resubscription but were published before its
    #: starting point (a lagging Redis replica): covered by the cache, ignored.
    tail_covered: int = 0
    #: Full reloads completed after the first load.
    reloads: int = 0
    #: Times the subscription was opened again without a reload (silence, reconnect).
    resubscriptions: int = 0


class BadMessageBudget:
    """Bad messages earn a reload :data:`BAD_MESSAGE_RELOADS` times per window, then none.

    A message that does not decode proves nothing about lost ones (the seq of the next good
    message does), so a channel full of garbage costs a few reloads a minute, not one a
    second forever; every bad message is still counted and logged.
    """

    def __init__(self) -> None:
        self._spent: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Whether a bad message at ``now`` still earns a reload."""
        while self._spent and now - self._spent[0] > BAD_MESSAGE_WINDOW_S:
            self._spent.popleft()
        if len(self._spent) >= BAD_MESSAGE_RELOADS:
            return False
        self._spent.append(now)
        return True
