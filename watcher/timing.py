"""Clocks and waits: the only place the watcher's loops learn what time it is.

Every loop that runs forever takes a :class:`Clock` and a ``stop`` event instead of calling
``time`` or ``asyncio.sleep`` directly, so tests drive them with short intervals and end
them deterministically. Lease deadlines are measured on the *monotonic* clock (a
wall-clock jump must never extend a lease); message and status times use the wall clock.
The retry delay after a failure is :class:`shared.backoff.Backoff`, re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from shared.backoff import Backoff

__all__ = ["SYSTEM_CLOCK", "Backoff", "Clock", "SystemClock", "wait_event"]


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
