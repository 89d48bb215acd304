"""Queue reads run off the writer (``queue/sqlite/reader.py``): they answer while the writer is held
up mid-batch, see only committed state, and cannot write."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import QueueError, QueueFilter, SqliteQueue
from postier.queue.sqlite.backend import DB_NAME, LOCK_NAME
from postier.queue.sqlite.reader import Reader

BODY = b"Subject: r\r\n\r\nhello\r\n"


def _envelope(rcpt: str) -> Envelope:
    return Envelope(Address("alice", "example.org"), (Recipient(Address(rcpt, "example.net")),))


async def test_reads_answer_while_the_writer_waits_for_its_lock(tmp_path: Path) -> None:
    """Another process holds the writer lock (as a ``postier queue`` tool mid-batch would): an
    enqueue waits for it, while stats, list, count and get answer from the last commit."""
    q = SqliteQueue(tmp_path / "queue")
    await q.open()
    try:
        first = await q.enqueue(_envelope("bob"), BODY)
        fd = os.open(tmp_path / "queue" / LOCK_NAME, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: the writer thread's flock now blocks
            blocked = asyncio.create_task(q.enqueue(_envelope("carol"), BODY))
            stats = await asyncio.wait_for(q.stats(), 30)
            listed = await asyncio.wait_for(q.list_messages(), 30)
            count = await asyncio.wait_for(q.count_messages(QueueFilter()), 30)
            record = await asyncio.wait_for(q.get(first), 30)
            assert not blocked.done()  # the reads did not wait for it, nor it for them
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        second = await asyncio.wait_for(blocked, 30)
        assert (sum(stats.messages.values()), count, [m.id for m in listed], record.id) == (
            1,
            1,
            [first],
            first,
        )
        assert await q.count_messages(QueueFilter()) == 2  # a write awaited is visible to the next read
        assert (await q.get(second)).id == second
    finally:
        await q.close()


async def test_reads_need_an_open_queue(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue")
    with pytest.raises(QueueError, match="not open"):
        await q.stats()
    await q.open()
    await q.close()
    with pytest.raises(QueueError, match="not open"):
        await q.list_messages()


async def test_the_reader_connection_cannot_write(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue")
    await q.open()
    await q.close()  # the schema is made; the reader below is on its own
    path = tmp_path / "queue" / DB_NAME
    reader = Reader(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    try:
        with pytest.raises(QueueError, match=r"readonly|read-only"):
            await reader.run(lambda conn: conn.execute("DELETE FROM messages"))
        assert await reader.run(lambda conn: conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]) == 0
    finally:
        await reader.close()


async def test_one_read_sees_one_snapshot(tmp_path: Path) -> None:
    """A read is one read transaction: a commit made by another connection in the middle of it is
    not seen by its later statements."""
    q = SqliteQueue(tmp_path / "queue")
    await q.open()
    await q.close()
    path = tmp_path / "queue" / DB_NAME
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def two_counts(conn: sqlite3.Connection) -> tuple[int, int]:
        before = conn.execute("SELECT COUNT(*) FROM schema_info").fetchone()[0]
        other.execute("INSERT INTO schema_info (version) VALUES (-1)")  # committed (autocommit)
        after = conn.execute("SELECT COUNT(*) FROM schema_info").fetchone()[0]
        return before, after

    reader = Reader(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    try:
        before, after = await reader.run(two_counts)
        assert before == after
        fresh = await reader.run(lambda conn: conn.execute("SELECT COUNT(*) FROM schema_info").fetchone()[0])
        assert fresh == before + 1
    finally:
        await reader.close()
        other.close()
