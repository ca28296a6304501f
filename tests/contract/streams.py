"""Helpers the contract tests share for reading change streams."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.change_stream import AsyncChangeStream

#: ``max_await_time_ms`` of every contract-test stream: short, so empty batches come fast.
AWAIT_MS = 150


async def drain(stream: AsyncChangeStream[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Read ``count`` events, giving up after a bounded number of empty getMores.

    Stops early when the stream ended (after an ``invalidate``).
    """
    events: list[dict[str, Any]] = []
    for _ in range(40):
        if len(events) >= count or not stream.alive:
            break
        event = await stream.try_next()
        if event is not None:
            events.append(event)
    return events


def keys(events: list[dict[str, Any]]) -> list[Any]:
    """The ``documentKey._id`` of each event."""
    return [e["documentKey"]["_id"] for e in events]
