"""Connection slots shared by every node: a destination that allows 20 connections gets 20 in all.

Theory of operation. Slot ``i`` of destination ``D`` is the PostgreSQL advisory lock ``(hashtext(D),
i)``, held on one connection of this node's own (not a pooled one). Taking a slot tries the locks
``0 … limit - 1`` in one statement and keeps the first it gets; giving it back unlocks it. Nothing is
written (no WAL, no flush): two round trips per transaction. A node that dies, or loses that
connection, loses its locks with it — PostgreSQL releases a session's advisory locks when the session
ends — so a slot is never stranded and needs no lease. (A destination whose name hashes like another's
shares its slots: harmless, and rare in 32 bits.)

While the database is away, ``take`` raises ``QueueError``; the scheduler then goes on under its own
per-node limit (deliveries pause anyway, claims failing) rather than stop every transaction in
progress.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, connect: Callable[[], Any], errors: Callable[[BaseException], QueueError]) -> None:
        self._connect, self._errors = connect, errors
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._epoch = 0  # bumped each time the connection is made again: older slots are gone
        self._held: dict[str, set[int]] = {}  # by destination, the slots of this connection

    async def take(self, key: str, limit: int) -> tuple[int, int] | None:
        """A free slot of ``key`` (its number and the connection's epoch), or None when all
        ``limit`` are taken by this node or others."""
        async with self._lock:
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
            return slot, self._epoch

    async def give(self, key: str, slot: tuple[int, int]) -> None:
        """Give a slot back (nothing to do when its connection is gone: so is the lock)."""
        number, epoch = slot
        async with self._lock:
            if self._conn is None or epoch != self._epoch:
                return
            held = self._held.get(key, set())
            held.discard(number)
            if not held:
                self._held.pop(key, None)
            try:
                await self._conn.execute("SELECT pg_advisory_unlock(hashtext($1), $2)", key, number)
            except Exception:
                await self._drop()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        self._held.clear()  # the session's locks end with it
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()
