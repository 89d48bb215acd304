"""250 means durable: SIGKILL `postier serve` at random moments while many clients send, restart it,
and check that every message that got a 250 is in the queue with its exact bytes, and that nothing in
the queue is partial (every queued body is one a client sent, whole).

Every third message is large (8 to 64 KiB): bodies of 8 KiB and more go to the queue's body log
(``queue/sqlite/bodylog.py``, appended and fdatasync'd before the commit that references them), the others
inline in SQLite, so a kill can land in either write path, or between them. The same runs on the
PostgreSQL queue (every body in the group commit's transaction, as bytea)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from pathlib import Path
from typing import Any

import pytest

from postier.queue import Queue, SqliteQueue
from postier.queue.postgres import PostgresQueue
from tests import pgtest
from tests.integration.harness import PostierProcess, make_config

pytestmark = pytest.mark.integration

ROUNDS = 20
CLIENTS = 12
LARGE = 8 * 1024  # the queue's body_log_min_bytes: from this size on, bodies go to the body log


def _body(worker: int, n: int) -> bytes:
    """A message; every third one is 8–64 KiB, in lines of 76 characters plus CRLF."""
    head = f"Subject: crash test {worker}-{n}\r\n\r\n".encode()
    if n % 3 == 0:
        text = random.randbytes(random.randint(LARGE, 64 * 1024) // 2 + 1).hex()
        return head + b"".join(text[i : i + 76].encode() + b"\r\n" for i in range(0, len(text), 76))
    return head + random.randbytes(256).hex().encode() + b"\r\n"


async def _client(port: int, worker: int, acked: dict[str, bytes], sent: set[bytes]) -> None:
    """Send messages until the connection breaks; record each body that got a 250 under its id."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        await reader.readline()
        writer.write(b"EHLO crash.example\r\n")
        while (line := await reader.readline())[3:4] != b" ":
            if not line:  # killed before the EHLO reply ended: readline returns b"" at once, forever
                return
        n = 0
        while True:
            n += 1
            body = _body(worker, n)
            sent.add(body)
            writer.write(b"MAIL FROM:<crash@example.org>\r\nRCPT TO:<postmaster@localhost>\r\nDATA\r\n")
            for _ in range(3):
                await reader.readline()
            writer.write(body + b".\r\n")
            reply = await reader.readline()
            if not reply.startswith(b"250 "):
                return
            acked[reply.decode().rsplit(" ", 1)[1].strip()] = body
    except (OSError, asyncio.IncompleteReadError, IndexError):
        return
    finally:
        writer.close()


async def _check_queue(queue: Queue, acked: dict[str, bytes], sent: set[bytes]) -> int:
    await queue.open()
    try:
        for qid, body in acked.items():
            stored = await queue.read_body(qid)
            message = stored[stored.index(b"Subject: crash test") :]
            assert hashlib.sha256(message).digest() == hashlib.sha256(body).digest(), qid
        records = await queue.list_messages(limit=1_000_000)
        for record in records:
            stored = await queue.read_body(record.id)
            assert stored[stored.index(b"Subject: crash test") :] in sent, f"partial message {record.id}"
        return len(records)
    finally:
        await queue.close()


def _large(acked: dict[str, bytes]) -> int:
    return sum(len(body) >= LARGE for body in acked.values())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkill_never_loses_an_acknowledged_message(tmp_path: Path, backend: str) -> None:
    queue: Queue = SqliteQueue(tmp_path / "var" / "queue")
    sections: dict[str, dict[str, Any]] = {"log": {"level": "warning"}}
    if backend == "postgres":
        await pgtest.require_pg()
        schema = pgtest.new_schema()
        sections["queue"] = {"backend": "postgres", "dsn": pgtest.DSN, "schema": schema}
        queue = PostgresQueue(pgtest.DSN, schema=schema)
    try:
        await _kill_rounds(tmp_path, make_config(tmp_path / "var", **sections), queue)
    finally:
        if isinstance(queue, PostgresQueue):
            await pgtest.drop_schema(queue.schema)


async def _kill_rounds(tmp_path: Path, config: dict[str, Any], queue: Queue) -> None:
    process = PostierProcess(tmp_path, config)
    acked: dict[str, bytes] = {}
    sent: set[bytes] = set()
    rng = random.Random(5321)
    try:
        for _round in range(ROUNDS):
            await asyncio.to_thread(process.start)
            port = process.ports["smtp"]
            large_before = _large(acked)
            clients = [asyncio.create_task(_client(port, w, acked, sent)) for w in range(CLIENTS)]
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            # A slow machine may not have acknowledged anything yet: each round kills the server only
            # once it has said 250 to at least one large message (at a random moment after that).
            deadline = time.monotonic() + 60
            while _large(acked) == large_before and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            process.kill()
            await asyncio.gather(*clients)
        assert len(acked) >= ROUNDS, "the clients should have had messages acknowledged"
        assert _large(acked) >= ROUNDS, "at least one large message acknowledged in each round"
        stored = await _check_queue(queue, acked, sent)
        assert stored >= len(acked)
    finally:
        process.kill()
