"""An autouse check that fails any async test which leaves asyncio tasks running.

Background tasks that outlive their owner are the most reported bug in this kind of
service; every task a test starts must be stopped by the code under test (or the test).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def no_leftover_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail the test if, after its fixtures are torn down, tasks it started still run."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    for _ in range(5):
        await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leftover:
        for t in leftover:
            t.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        names = ", ".join(sorted(t.get_name() for t in leftover))
        pytest.fail(f"{request.node.nodeid} left asyncio tasks running: {names}")
