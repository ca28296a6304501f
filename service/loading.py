"""Loading the collection while the channel keeps talking: step 3 of the start-up protocol.

Why a module of its own: the load may take seconds (100k documents), and messages keep
arriving meanwhile. They are drained as they come -- each handed to ``on_message``, which
decodes it and applies it to the *serving* cache at once -- and kept in order, so the
subscriber can replay those after the starting seq onto the new snapshot before the swap.
A resubscription during the load needs no restart: a message lost with it shows up as a
gap in the replay or in the next heartbeat's seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from service.feed import SUBSCRIBED, Feed
from shared.batches import Batch

Doc = dict[str, Any]


async def load_buffering(
    load: Coroutine[Any, Any, list[Doc]],
    feed: Feed,
    on_message: Callable[[bytes | str], Batch | None],
    *,
    poll_s: float,
) -> tuple[list[Doc], list[tuple[bytes | str, Batch]]]:
    """Run ``load`` to completion while draining ``feed``; the documents and the messages."""
    task = asyncio.create_task(load, name="scc-replica-load")
    buffered: list[tuple[bytes | str, Batch]] = []
    try:
        while True:
            while (item := await feed.receive(0)) is not None:
                if item == SUBSCRIBED:
                    continue
                message = on_message(item)
                if message is not None:
                    buffered.append((item, message))
            if task.done():
                return task.result(), buffered
            await asyncio.wait({task}, timeout=poll_s)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
