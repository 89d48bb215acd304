"""Spooled message bodies: anonymous spool files, ``MessageBody``, and the SQLite queue storing one
without reading it into memory (issue 14: 2)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import SqliteQueue
from postier.spool import MessageBody, ReadBudget, SpoolFile, as_bytes

ENV = Envelope(Address("a", "x.test"), (Recipient(Address("b", "y.test")),))


def spooled(tmp_path: Path, head: bytes, *parts: bytes) -> MessageBody:
    spool = SpoolFile(tmp_path)
    spool.write(list(parts))
    return MessageBody(head, spool)


def test_a_spool_file_has_no_name_and_reads_back(tmp_path: Path) -> None:
    body = spooled(tmp_path, b"Received: x\r\n", b"a" * 100_000, bytearray(b"b" * 5))
    assert list(tmp_path.iterdir()) == []
    whole = b"Received: x\r\n" + b"a" * 100_000 + b"b" * 5
    assert len(body) == len(whole)
    assert body.read() == whole == as_bytes(body)
    assert b"".join(body.chunks(size=4096)) == whole
    assert body.sha256() == hashlib.sha256(whole).hexdigest()
    body.close()
    body.close()


def test_copy_to_writes_head_and_spool_at_an_offset(tmp_path: Path) -> None:
    body = spooled(tmp_path, b"HEAD", os.urandom(3 << 20))
    target = tmp_path / "target"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"0123456789", 0)
        assert body.copy_to(fd, 10) == len(body)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"0123456789" + body.read()


@pytest.mark.parametrize("min_bytes", [1000, 0])
async def test_the_queue_stores_a_spooled_body(tmp_path: Path, min_bytes: int) -> None:
    queue = SqliteQueue(tmp_path / "queue", body_log_min_bytes=min_bytes)
    await queue.open()
    try:
        bodies = [spooled(tmp_path, b"H%d\r\n" % i, os.urandom(50_000 + i)) for i in range(5)]
        small = MessageBody(b"just a head\r\n")
        ids = await asyncio.gather(
            queue.enqueue(ENV, small),
            *(queue.enqueue(ENV, body) for body in bodies),
            queue.enqueue(ENV, b"x"),
        )
        assert await queue.read_body(ids[0]) == b"just a head\r\n"
        for qid, body in zip(ids[1:], bodies, strict=False):
            assert await queue.read_body(qid) == body.read()
            assert (await queue.get(qid)).size == len(body)
        assert await queue.read_body(ids[-1]) == b"x"
    finally:
        await queue.close()
        for body in bodies:
            body.close()


async def test_the_read_budget_makes_large_readers_take_turns() -> None:
    budget = ReadBudget(100)
    order: list[str] = []

    async def reader(name: str, octets: int, hold_s: float) -> None:
        async with budget.hold(octets):
            order.append(f"{name}+")
            await asyncio.sleep(hold_s)
            order.append(f"{name}-")

    await asyncio.gather(reader("a", 60, 0.05), reader("b", 60, 0.0), reader("c", 30, 0.0))
    assert order.index("b+") > order.index("a-")  # 60 + 60 > 100: b waited for a
    assert order.index("c+") < order.index("a-")  # 60 + 30 fit: c did not
    async with budget.hold(10**9):  # larger than the budget: counts as all of it
        assert budget.free == 0
    assert budget.free == 100
