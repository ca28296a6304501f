"""Clocks, waits and backoff: the only place the watcher's loops learn what time it is.

Every loop that runs forever takes a :class:`Clock` and a ``stop`` event instead of calling
``time`` or ``asyncio.sleep`` directly, so tests drive them with short intervals and end
them deterministically. Lease deadlines are measured on the *monotonic* clock (a wall-clock
jump must never extend a lease); message and status times use the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """Where the watcher reads time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (lease deadlines, throttles)."""
        ...

    def wall(self) -> float:
        """Unix seconds (message ``published_at``, status hash times)."""
        ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()


SYSTEM_CLOCK: Clock = SystemClock()


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; True if it is set."""
    if event.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt *n* waits ``uniform(0, min(cap, base·2ⁿ))``.

    Full jitter spreads the retries of several watchers hitting the same outage, so they do
    not reconnect in lock-step.
    """

    base: float = 0.1
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next retry; each call doubles the ceiling up to ``cap``."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """Start over after a success."""
        self.attempt = 0
