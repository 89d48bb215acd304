"""Connection slots shared by every node: a destination that allows 20 connections gets 20 in all.

Theory of operation. Slot ``i`` of destination ``D`` is the PostgreSQL advisory lock ``(hashtext(D),
i)``, held on one connection of this node's own (not a pooled one). Taking a slot tries the locks
``0 … limit - 1`` in one statement and keeps the first it gets; giving it back unlocks it. Nothing is
written (no WAL, no flush). A slot given back is kept a moment (``keep_s``, 0.2 s) for the node's
next transaction to the same destination, which then takes it without a round trip — under a steady
load, most of them (two statements per message otherwise) — but never more than ``max_hold_s`` (5 s)
in a row, so the other nodes get their turn at a busy destination. A node that dies, or loses that
connection, loses its locks with it — PostgreSQL releases a session's advisory locks when the session
ends — so a slot is never stranded and needs no lease. (A destination whose name hashes like another's
shares its slots: harmless, and rare in 32 bits.)

While the database is away, ``take`` raises ``QueueError``; the scheduler then goes on under its own
per-node limit (deliveries pause anyway, claims failing) rather than stop every transaction in
progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from postier.mail.errors import QueueError

__all__ = ["ClusterSlots"]

# Advisory locks are re-entrant within a session: the slots this node holds already are skipped
# (CASE: evaluated in order, so no lock is even tried on them).
_TAKE = (
    "SELECT s FROM generate_series(0, $2 - 1) AS s"
    " WHERE CASE WHEN s = ANY($3::int[]) THEN false ELSE pg_try_advisory_lock(hashtext($1), s) END LIMIT 1"
)


class ClusterSlots:
    """``connect`` opens the node's slot connection (again, after it broke)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        errors: Callable[[BaseException], QueueError],
        *,
        keep_s: float = 0.2,
        max_hold_s: float = 5.0,
    ) -> None:
        self._connect, self._errors = connect, errors
        self._keep_s, self._max_hold_s = keep_s, max_hold_s
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._epoch = 0  # bumped each time the connection is made again: older slots are gone
        self._held: dict[str, set[int]] = {}  # by destination, the slots of this connection
        self._since: dict[tuple[str, int], float] = {}  # when each held slot was locked
        self._idle: dict[str, list[tuple[int, float]]] = {}  # given back, still locked: (slot, when)
        self._sweeper: asyncio.Task[None] | None = None

    async def take(self, key: str, limit: int) -> tuple[int, int] | None:
        """A free slot of ``key`` (its number and the connection's epoch), or None when all
        ``limit`` are taken by this node or others."""
        async with self._lock:
            idle = self._idle.get(key)
            if idle and self._conn is not None:
                number, _ = idle.pop()
                return number, self._epoch
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._drop()
                    self._conn = await self._connect()
                    self._epoch += 1
                held = self._held.setdefault(key, set())
                slot = await self._conn.fetchval(_TAKE, key, limit, sorted(held))
            except Exception as exc:
                await self._drop()
                raise self._errors(exc) from None
            if slot is None:
                return None
            held.add(slot)
            self._since[(key, slot)] = time.monotonic()
            return slot, self._epoch

    async def give(self, key: str, slot: tuple[int, int]) -> None:
        """Give a slot back: kept ``keep_s`` for this node's next transaction to ``key`` unless held
        ``max_hold_s`` already (nothing to do when its connection is gone: so is the lock)."""
        number, epoch = slot
        async with self._lock:
            if self._conn is None or epoch != self._epoch:
                return
            now = time.monotonic()
            if self._keep_s > 0 and now - self._since.get((key, number), now) < self._max_hold_s:
                self._idle.setdefault(key, []).append((number, now))
                if self._sweeper is None or self._sweeper.done():
                    self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
                return
            await self._unlock(key, number)

    async def _sweep(self) -> None:
        """Unlock the slots kept idle longer than ``keep_s``; ends when none is kept."""
        while self._idle:
            await asyncio.sleep(self._keep_s / 2)
            async with self._lock:
                cutoff = time.monotonic() - self._keep_s
                for key in list(self._idle):
                    stale = [n for n, at in self._idle[key] if at <= cutoff]
                    self._idle[key] = [(n, at) for n, at in self._idle[key] if at > cutoff]
                    if not self._idle[key]:
                        del self._idle[key]
                    for number in stale:
                        await self._unlock(key, number)

    async def _unlock(self, key: str, number: int) -> None:
        """Release one slot (the caller holds ``_lock``)."""
        held = self._held.get(key, set())
        held.discard(number)
        self._since.pop((key, number), None)
        if not held:
            self._held.pop(key, None)
        if self._conn is None:
            return
        try:
            await self._conn.execute("SELECT pg_advisory_unlock(hashtext($1), $2)", key, number)
        except Exception:
            await self._drop()

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        self._held.clear()  # the session's locks end with it
        self._since.clear()
        self._idle.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()
