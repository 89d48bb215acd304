"""Waiting for the client's next bytes, with the RFC 5321 §4.5.3.2 timeouts, at one timer per session.

Theory of operation. A session waits for input many times per message (four times per message for a
client that does not pipeline), and each wait has a timeout: 5 minutes for a command, 3 minutes for a
DATA block. An ``asyncio.timeout`` context per wait schedules and cancels a timer every time; here a
wait only records its deadline and creates one future. The one timer of the session stays scheduled
across waits: when it fires it compares its own time with the deadline of the wait in progress —
equal or later means that wait timed out; earlier means input arrived meanwhile and a later wait is
in progress, so the timer is moved to that wait's deadline; no wait in progress drops it (the next
wait schedules a new one). A wait whose deadline is earlier than the timer's (a DATA wait after a
command wait) moves the timer forward. So the timeout of each wait is exact, as with
``asyncio.timeout``, and a busy session touches its timer about once per timeout period.

``wake()`` ends the wait in progress (bytes, end of file, connection lost, shutdown); with no wait in
progress it does nothing: the session looks at its input before it waits again.
"""

from __future__ import annotations

import asyncio

__all__ = ["InputWait"]


class InputWait:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout_s: float) -> bool:
        """Wait until ``wake()``: True, or ``timeout_s`` passed first: False."""
        loop = self._loop
        self._deadline = deadline = loop.time() + timeout_s
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer, deadline)
        self._expired = False
        self._future = future = loop.create_future()
        try:
            await future
        finally:
            self._future = None
        return not self._expired

    def close(self) -> None:
        """The session is over: drop the timer (it would keep the session in memory until it fires)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self, when: float) -> None:
        self._timer = None
        if self._future is None or self._future.done():
            return  # no wait in progress, or input came first
        if self._deadline <= when:
            self._expired = True
            self.wake()
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer, self._deadline)
