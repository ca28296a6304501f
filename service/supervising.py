"""Owns the replica's root background tasks: named, watched, and stopped -- never silent.

Why it exists: a background task that dies unnoticed (the subscriber, say) leaves a
replica that answers from a cache nobody updates any more -- the most reported bug in
this kind of service. Every root task is started here; if one ends for any reason but
our own stop, the failure is logged with its traceback, remembered (readiness fails)
and handed to ``on_failure`` (the entry point makes uvicorn exit, non-zero).

Invariant: after :meth:`Supervisor.aclose` returns, no task it started is running.
Python 3.11's ``asyncio.wait_for`` (used inside redis-py) can swallow a cancellation that
lands in the same tick as the inner future completes (CPython issue 86296, fixed in
3.12), so :func:`stop_tasks` cancels again until the tasks really end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import structlog

from service.errors import RootTaskFailed

log = structlog.get_logger("service.supervising")


class Supervisor:
    """Starts named root tasks and reports the first one that ends on its own."""

    def __init__(self, *, on_failure: Callable[[RootTaskFailed], None] | None = None) -> None:
        self._on_failure = on_failure
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.failure: RootTaskFailed | None = None

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as the root task ``name`` (it is expected to run until stopped)."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended)
        self._tasks.append(task)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        if self._stopping:
            if not task.cancelled() and task.exception() is not None:
                log.warning("root task failed while stopping", task=task.get_name())
            return
        if task.cancelled():
            error = RootTaskFailed(f"root task {task.get_name()} was cancelled")
            log.error("root task cancelled", task=task.get_name())
        elif (exc := task.exception()) is not None:
            error = RootTaskFailed(f"root task {task.get_name()} died: {exc!r}")
            error.__cause__ = exc
            log.error("root task died", task=task.get_name(), exc_info=exc)
        else:
            error = RootTaskFailed(f"root task {task.get_name()} returned")
            log.error("root task returned", task=task.get_name())
        if self.failure is None:
            self.failure = error
            if self._on_failure is not None:
                self._on_failure(error)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Cancel every task and wait (at most ``timeout_s``) for them to end."""
        self._stopping = True
        await stop_tasks(self._tasks, timeout_s=timeout_s)
        self._tasks.clear()


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, timeout_s: float = 5.0, recancel_s: float = 0.5
) -> None:
    """Cancel ``tasks`` and wait for them, re-cancelling any that swallowed the request."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            for task in pending:
                log.error("task did not stop in time", task=task.get_name())
            return
        _, pending = await asyncio.wait(pending, timeout=min(recancel_s, remaining))
        for task in pending:
            log.warning("task ignored a cancellation; cancelling again", task=task.get_name())
