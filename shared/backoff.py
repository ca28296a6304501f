"""The one retry delay every loop uses: exponential, capped, with full jitter (tenacity's).

Why here: a retry loop that computes its own ``base * 2 ** failures`` grows without bound
(a float overflow after ~1,024 failures ends the loop, and the process with it) or retries
in lock-step with its neighbours. Every loop in the codebase that waits after a failure
asks a :class:`Backoff` instead; loops keep their own structure (a stop event, a fake
clock in tests), only the delay comes from here.

Invariant: whatever the number of failures, :meth:`Backoff.next_delay` returns a finite
float in ``[0, cap]``; attempt *n* (from 1) waits ``uniform(0, min(cap, base * 2**(n-1)))``
-- tenacity's ``wait_random_exponential``, the "full jitter" strategy, which spreads the
retries of many processes hitting the same outage.
"""

from __future__ import annotations

import math

from tenacity import RetryCallState, Retrying
from tenacity.wait import wait_base, wait_random_exponential

#: Attempts beyond which the ceiling cannot grow further for any sane ``base``/``cap``
#: (``2**200`` exceeds every ratio of two finite seconds values); the counter saturates here.
_MAX_COUNTED_ATTEMPT = 200


class Backoff:
    """Delays for consecutive failed attempts of one loop; :meth:`reset` after a success."""

    __slots__ = ("_state", "_wait", "attempt", "base", "cap")

    def __init__(self, *, base: float = 0.1, cap: float = 10.0, wait: wait_base | None = None):
        if not (math.isfinite(base) and math.isfinite(cap)) or base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, both finite; got {base=}, {cap=}")
        self.base = base
        self.cap = cap
        #: Failed attempts since the last :meth:`reset` (saturates; never overflows).
        self.attempt = 0
        self._wait = wait if wait is not None else wait_random_exponential(multiplier=base, max=cap)
        self._state = RetryCallState(Retrying(), None, (), {})

    def next_delay(self) -> float:
        """The delay (seconds) before the next retry; each call widens the window up to ``cap``."""
        self.attempt = min(self.attempt + 1, _MAX_COUNTED_ATTEMPT)
        self._state.attempt_number = self.attempt
        delay = float(self._wait(self._state))
        return min(max(delay, 0.0), self.cap)

    def reset(self) -> None:
        """Start over after a success."""
        self.attempt = 0
