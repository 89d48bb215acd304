"""ConnectionPool with fake connections (same interface as SmtpConnection) and an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from tests.waiting import eventually

from postier.delivery.connection import SmtpConnection
from postier.delivery.pool import ConnectionPool


@dataclass
class FakeConnection:
    """What the pool uses of ``SmtpConnection``: is_usable, messages, poll, quit, close."""

    name: str
    messages: int = 1
    is_alive: bool = True
    log: list[str] = field(default_factory=list)

    @property
    def is_usable(self) -> bool:
        return self.is_alive

    def poll(self) -> bool:
        return self.is_alive

    async def quit(self) -> None:
        self.log.append(f"quit {self.name}")
        self.is_alive = False

    def close(self) -> None:
        self.log.append(f"close {self.name}")
        self.is_alive = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def conn(name: str, log: list[str], **kwargs: Any) -> SmtpConnection:
    return cast(SmtpConnection, FakeConnection(name, log=log, **kwargs))


async def test_take_returns_the_most_recent_idle_connection_once() -> None:
    log: list[str] = []
    pool = ConnectionPool(idle_s=60, max_messages=10, clock=Clock())
    first, second = conn("c1", log), conn("c2", log)
    pool.give("mx:a", first)
    pool.give("mx:a", second)
    assert pool.idle_count("mx:a") == 2
    assert pool.take("mx:a") is second
    assert pool.take("mx:a") is first
    assert pool.take("mx:a") is None
    assert pool.take("mx:other") is None
    await pool.close()
    assert log == []  # taken connections belong to their takers


async def test_stale_or_dead_connections_are_not_handed_out() -> None:
    log: list[str] = []
    clock = Clock()
    pool = ConnectionPool(idle_s=5, max_messages=10, clock=clock)
    pool.give("mx:a", conn("old", log))
    clock.now += 6
    assert pool.take("mx:a") is None
    dead = FakeConnection("dead", log=log)
    pool.give("mx:a", cast(SmtpConnection, dead))
    dead.is_alive = False  # the peer closed it while idle
    assert pool.take("mx:a") is None
    await pool.close()
    assert sorted(log) == ["close dead", "quit old"]


async def test_used_up_connections_are_quit() -> None:
    log: list[str] = []
    pool = ConnectionPool(idle_s=60, max_messages=3, clock=Clock())
    pool.give("mx:a", conn("full", log, messages=3))
    assert pool.idle_count() == 0
    await pool.close()
    assert log == ["quit full"]


async def test_disabled_pool_keeps_nothing() -> None:
    log: list[str] = []
    for pool in (
        ConnectionPool(idle_s=0, max_messages=100, clock=Clock()),
        ConnectionPool(idle_s=5, max_messages=1, clock=Clock()),
    ):
        pool.give("mx:a", conn("c", log))
        assert pool.take("mx:a") is None
        await pool.close()
    assert log == ["quit c", "quit c"]


async def test_close_quits_every_idle_connection_and_stops_reuse() -> None:
    log: list[str] = []
    pool = ConnectionPool(idle_s=60, max_messages=10, clock=Clock())
    pool.give("mx:a", conn("a", log))
    pool.give("mx:b", conn("b", log))
    await pool.close()
    assert sorted(log) == ["quit a", "quit b"]
    pool.give("mx:a", conn("late", log))
    await pool.close()
    assert log[-1] == "quit late" and pool.idle_count() == 0


async def test_one_timer_quits_each_connection_when_its_idle_time_is_up() -> None:
    """The pool's single sweep timer: an older connection is QUIT at its own expiry, while a younger one
    given back later stays until its own (the sweep comes back for it)."""
    log: list[str] = []
    clock = Clock()
    pool = ConnectionPool(idle_s=0.2, max_messages=10, clock=clock)
    pool.give("mx:a", conn("old", log))
    clock.now += 0.1
    pool.give("mx:b", conn("young", log))
    clock.now += 0.1  # the sweep, due now in loop time, finds "old" expired and "young" not yet
    await eventually(lambda: log == ["quit old"], "the old connection quit")
    assert pool.idle_count("mx:b") == 1  # witnessed above: the sweep ran and kept it
    clock.now += 0.1
    await eventually(lambda: log == ["quit old", "quit young"], "the young connection quit at its turn")
    assert pool.idle_count() == 0
    await pool.close()
