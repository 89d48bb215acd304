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

_SWEEP_MIN_S = 0.05


@dataclass(slots=True)
class _Idle:
    connection: SmtpConnection
    since: float


class ConnectionPool:
    """Idle outbound connections by destination key; see the module docstring."""

    def __init__(self, *, idle_s: float, max_messages: int, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_messages = max_messages
        self._clock = clock
        self._idle: dict[str, list[_Idle]] = {}
        self._quitting: set[asyncio.Task[None]] = set()
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None
        """One timer for the whole pool, due when the oldest idle connection expires (a timer per
        connection given back cost more than the rest of ``give``)."""

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
        self._idle.setdefault(key, []).append(_Idle(connection, self._clock()))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.idle_s, self._expire)

    async def close(self) -> None:
        """QUIT every idle connection and wait for all pending QUITs; no reuse afterwards."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for entries in self._idle.values():
            for entry in entries:
                self._retire(entry.connection)
        self._idle.clear()
        while self._quitting:
            await asyncio.gather(*self._quitting, return_exceptions=True)

    def _expire(self) -> None:
        """QUIT the connections idle for ``idle_s``; come back when the next one is due."""
        self._sweep = None
        now, oldest = self._clock(), None
        for key in list(self._idle):
            keep = []
            for entry in self._idle[key]:
                if now - entry.since >= self.idle_s:
                    self._retire(entry.connection)
                else:
                    keep.append(entry)
                    oldest = entry.since if oldest is None else min(oldest, entry.since)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if oldest is not None:
            delay = max(oldest + self.idle_s - now, _SWEEP_MIN_S)
            self._sweep = asyncio.get_running_loop().call_later(delay, self._expire)

    def _retire(self, connection: SmtpConnection) -> None:
        if not connection.is_usable:
            connection.close()
            return
        task = asyncio.get_running_loop().create_task(connection.quit())
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)
