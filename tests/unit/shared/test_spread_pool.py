"""SpreadReplicaPool: the same sorted order everywhere, a start by instance id, then the master."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.sentinel import MasterNotFoundError, SlaveNotFoundError

from shared.clients import SpreadReplicaPool


class FakeSentinels:
    """A sentinel manager that names ``replicas`` (in its own order) and ``master``."""

    def __init__(self, replicas: list[tuple[str, int]], master: tuple[str, int] | None) -> None:
        self.replicas, self.master = replicas, master

    async def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
        return list(self.replicas)

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        if self.master is None:
            raise MasterNotFoundError("none")
        return self.master


def pool(manager: FakeSentinels, index: int) -> SpreadReplicaPool:
    """A replica pool on ``manager`` starting at ``index``."""
    made = SpreadReplicaPool("m", manager, is_master=False)
    made.spread_index = index
    return made


async def addresses(p: SpreadReplicaPool) -> list[Any]:
    """Every address one connect attempt would try, in order."""
    tried = []
    with pytest.raises(SlaveNotFoundError):
        async for address in p.rotate_slaves():
            tried.append(address)
    return tried


async def test_start_follows_the_spread_index_over_a_sorted_list() -> None:
    """Two sentinels listing the replicas in different orders lead to the same first choice."""
    a = FakeSentinels([("h", 3), ("h", 1), ("h", 2)], ("h", 9))
    b = FakeSentinels([("h", 2), ("h", 3), ("h", 1)], ("h", 9))
    assert (await addresses(pool(a, 4)))[0] == (await addresses(pool(b, 4)))[0] == ("h", 2)
    assert await addresses(pool(a, 0)) == [("h", 1), ("h", 2), ("h", 3), ("h", 9)]


async def test_each_reconnect_goes_on_from_the_replica_used_last() -> None:
    """A second connect starts at the next replica (the one that failed is tried last)."""
    p = pool(FakeSentinels([("h", 1), ("h", 2), ("h", 3)], ("h", 9)), 0)
    p.slave_rr_counter = 0  # connected to ("h", 1) last
    assert await addresses(p) == [("h", 2), ("h", 3), ("h", 1), ("h", 9)]


async def test_without_replicas_the_master_is_used_and_without_both_nothing() -> None:
    """No live replica: the master (pub/sub is fine there); neither: SlaveNotFoundError."""
    assert await addresses(pool(FakeSentinels([], ("h", 9)), 3)) == [("h", 9)]
    assert await addresses(pool(FakeSentinels([], None), 3)) == []
