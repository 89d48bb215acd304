"""``Slots`` with a ``SharedSlots`` store: a destination's limit over every node of a cluster."""

from __future__ import annotations

import asyncio
from typing import Any

from postier.delivery.limits import Slots
from postier.mail.errors import QueueError


class FakeSharedSlots:
    """Slots counted in memory for every ``Slots`` that shares this object (the nodes of a cluster)."""

    def __init__(self) -> None:
        self.taken: dict[str, set[int]] = {}
        self.failing = False

    async def take_slot(self, key: str, limit: int) -> Any:
        if self.failing:
            raise QueueError("queue database: ConnectionRefusedError")
        taken = self.taken.setdefault(key, set())
        free = [i for i in range(limit) if i not in taken]
        if not free:
            return None
        taken.add(free[0])
        return free[0]

    async def give_slot(self, key: str, slot: Any) -> None:
        self.taken[key].discard(slot)


async def _busy(nodes: list[Slots], key: str, jobs: int) -> int:
    """Run ``jobs`` transactions to ``key`` spread over ``nodes``; the most at once."""
    now, most = [0], [0]

    async def job(slots: Slots) -> None:
        async with slots.hold(key):
            now[0] += 1
            most[0] = max(most[0], now[0])
            await asyncio.sleep(0.01)
            now[0] -= 1

    await asyncio.gather(*(job(nodes[i % len(nodes)]) for i in range(jobs)))
    return most[0]


async def test_a_destination_limit_holds_over_every_node() -> None:
    shared = FakeSharedSlots()
    nodes = [Slots(100, 3, shared) for _ in range(3)]
    assert await _busy(nodes, "mx.far.test", 30) == 3  # 3 in all, not 3 per node
    assert shared.taken["mx.far.test"] == set()  # every slot given back


async def test_without_a_shared_store_the_limit_is_per_node() -> None:
    assert await _busy([Slots(100, 3), Slots(100, 3)], "mx.far.test", 30) == 6


async def test_the_shared_store_away_leaves_the_node_limit() -> None:
    shared = FakeSharedSlots()
    shared.failing = True
    assert await _busy([Slots(100, 2, shared)], "mx.far.test", 10) == 2
