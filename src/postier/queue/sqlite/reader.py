"""The queue's reads, off the writer: a connection and a thread of their own.

Theory of operation. Listings, counts, a message's record and the statistics every metrics scrape
asks for used to be jobs of the writer thread (``writer.py``): each waited for the batch in progress,
ran inside the group-commit transaction and held the cross-process writer lock meanwhile, so a
scrape or a ``postier queue list`` slowed enqueues down. Here they run on one more SQLite connection
(``PRAGMA query_only``: it cannot write), in one thread of their own, one at a time. WAL mode lets
that connection read while the writer writes: each read is one read transaction (``BEGIN`` …
``COMMIT``), so it sees one committed state of the queue — every commit that ended before it began
(so a write the caller has awaited is always visible), and nothing of a batch in progress.

Bodies are still read by the writer (``SqliteQueue.read_body``): a body-log segment is removed right
after the commit that deletes its last message, so a read transaction that began before that commit
could find the segment gone and mistake a deleted message for a damaged one.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from postier.queue.sqlite.writer import map_error

__all__ = ["Reader"]

T = TypeVar("T")


class Reader:
    """Read-only queries, one at a time, on a connection made by ``connect`` at the first one."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], *, name: str = "postier-queue-reader"
    ) -> None:
        self._connect = connect
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` in the reader thread, inside one read transaction; storage errors become
        ``QueueError`` (as the writer's)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._call, fn))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")  # ends the read snapshot (nothing was written)
        except (sqlite3.Error, OSError) as exc:
            raise map_error(exc) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._connect()
            try:
                conn.execute("PRAGMA query_only=ON")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def close(self) -> None:
        """Close the connection (in its thread) and stop the thread; reads queued before are done."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
