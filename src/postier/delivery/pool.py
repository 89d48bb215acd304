"""Outbound connection reuse: idle sessions kept per destination for the next message.

Theory of operation. After a transaction ends cleanly the courier ``give``s the connection back
under its destination's key ("mx:example.org", …). It is kept idle for ``idle_s`` seconds and for at
most ``max_messages`` transactions in all; then it is QUIT. The next ``deliver()`` to the same
destination ``take``s the most recently used one, so a burst of messages to one domain shares a
connection (as Postfix's connection cache does), and skips connecting, EHLO, STARTTLS and AUTH.

A taken connection belongs to that one delivery until it is given back: the pool never hands one
connection to two callers, so concurrent ``deliver()`` calls are safe (each takes its own or opens a
new one). Before handing one out the pool looks at what the peer sent while it was idle
(``SmtpConnection.poll``): a 421 or a closed socket means it is dropped and the caller connects anew.
No RSET is sent: the client engine is idle after a transaction (RFC 5321 §4.1.4: MAIL may start a
new transaction once the previous one has ended).

``idle_s = 0`` or ``max_messages ≤ 1`` turns reuse off: every connection is QUIT after its message.
QUIT is sent by background tasks the pool tracks; ``close()`` QUITs every idle connection and waits
for them. The clock (monotonic seconds) is injected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from postier.delivery.connection import SmtpConnection
from postier.dns import Clock

__all__ = ["ConnectionPool"]


@dataclass(slots=True)
class _Idle:
    connection: SmtpConnection
    since: float
    timer: asyncio.TimerHandle


class ConnectionPool:
    """Idle outbound connections by destination key; see the module docstring."""

    def __init__(self, *, idle_s: float, max_messages: int, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_messages = max_messages
        self._clock = clock
        self._idle: dict[str, list[_Idle]] = {}
        self._quitting: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def is_enabled(self) -> bool:
        return self.idle_s > 0 and self.max_messages > 1 and not self._closed

    def idle_count(self, key: str | None = None) -> int:
        """Idle connections (for one destination, or all)."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(entries) for entries in self._idle.values())

    def take(self, key: str) -> SmtpConnection | None:
        """An idle, still-open connection for ``key`` (now the caller's), or None."""
        entries = self._idle.get(key)
        while entries:
            entry = entries.pop()
            entry.timer.cancel()
            fresh = self._clock() - entry.since <= self.idle_s
            if fresh and entry.connection.poll():
                return entry.connection
            self._retire(entry.connection)
        return None

    def give(self, key: str, connection: SmtpConnection) -> None:
        """Keep ``connection`` for the next message to ``key``, or QUIT it when it cannot be kept."""
        if not self.is_enabled or connection.messages >= self.max_messages or not connection.is_usable:
            self._retire(connection)
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.idle_s, self._expire, key, connection)
        self._idle.setdefault(key, []).append(_Idle(connection, self._clock(), timer))

    async def close(self) -> None:
        """QUIT every idle connection and wait for all pending QUITs; no reuse afterwards."""
        self._closed = True
        for entries in self._idle.values():
            for entry in entries:
                entry.timer.cancel()
                self._retire(entry.connection)
        self._idle.clear()
        while self._quitting:
            await asyncio.gather(*self._quitting, return_exceptions=True)

    def _expire(self, key: str, connection: SmtpConnection) -> None:
        entries = self._idle.get(key, [])
        for i, entry in enumerate(entries):
            if entry.connection is connection:
                del entries[i]
                self._retire(connection)
                break
        if not entries:
            self._idle.pop(key, None)

    def _retire(self, connection: SmtpConnection) -> None:
        if not connection.is_usable:
            connection.close()
            return
        task = asyncio.get_running_loop().create_task(connection.quit())
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)
