"""InputWait: one timer per session, each wait's timeout exact. The clock and the timers are a fake
(a manual clock the test moves); the futures are the running loop's."""

from __future__ import annotations

import asyncio
from typing import Any

from postier.server.inputwait import InputWait


class _Timer:
    def __init__(self, when: float, callback: Any, args: tuple[Any, ...]) -> None:
        self._when, self.callback, self.args, self.cancelled = when, callback, args, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """The part of an event loop that InputWait uses, with time moved by ``advance``."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[_Timer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> _Timer:
        timer = _Timer(when, callback, args)
        self.timers.append(timer)
        return timer

    def create_future(self) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    @property
    def live(self) -> list[_Timer]:
        return [t for t in self.timers if not t.cancelled]

    async def advance(self, seconds: float) -> None:
        """Let tasks run, move the clock, fire the timers now due (as a loop would), let tasks run."""
        for _ in range(3):
            await asyncio.sleep(0)
        self.now += seconds
        while due := [t for t in self.live if t.when() <= self.now]:
            for timer in due:
                timer.cancel()
                timer.callback(*timer.args)
        for _ in range(3):
            await asyncio.sleep(0)


def _make() -> tuple[InputWait, ManualClock]:
    clock = ManualClock()
    return InputWait(clock), clock  # type: ignore[arg-type]


async def test_a_wait_times_out_at_its_deadline_not_before() -> None:
    waiter, clock = _make()
    task = asyncio.create_task(waiter.wait(300))
    await clock.advance(299.9)
    assert not task.done()
    await clock.advance(0.1)
    assert task.done() and task.result() is False


async def test_wake_ends_the_wait_and_the_timer_is_reused_by_the_next_wait() -> None:
    waiter, clock = _make()
    task = asyncio.create_task(waiter.wait(300))
    await clock.advance(100)
    waiter.wake()
    await clock.advance(0)
    assert task.result() is True
    task = asyncio.create_task(waiter.wait(300))  # deadline 1400; the timer (1300) stays
    await clock.advance(0)
    assert len(clock.live) == 1
    await clock.advance(200)  # the old timer fires at 1300, finds a later deadline and moves
    assert not task.done() and [t.when() for t in clock.live] == [1400.0]
    await clock.advance(100)
    assert task.result() is False


async def test_a_shorter_timeout_after_a_longer_one_moves_the_timer_forward() -> None:
    waiter, clock = _make()
    task = asyncio.create_task(waiter.wait(300))  # a command wait
    await clock.advance(1)
    waiter.wake()
    await clock.advance(0)
    task = asyncio.create_task(waiter.wait(10))  # a DATA wait with a shorter timeout
    await clock.advance(10)
    assert task.result() is False


async def test_a_timer_with_no_wait_in_progress_is_dropped_and_close_cancels() -> None:
    waiter, clock = _make()
    task = asyncio.create_task(waiter.wait(5))
    await clock.advance(1)
    waiter.wake()
    await clock.advance(10)  # the timer fires while the session is busy: nothing happens
    assert task.result() is True and clock.live == []
    task = asyncio.create_task(waiter.wait(5))
    await clock.advance(0)
    waiter.close()
    assert clock.live == []
    waiter.wake()
    await clock.advance(0)
    assert task.result() is True
