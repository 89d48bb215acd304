"""250 means durable: SIGKILL `postier serve` at random moments while many clients send, restart it,
and check that every message that got a 250 is in the queue with its exact bytes, and that nothing in
the queue is partial (every queued body is one a client sent, whole)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from postier.queue import SqliteQueue
from tests.integration.harness import PostierProcess, make_config

pytestmark = pytest.mark.integration

ROUNDS = 20
CLIENTS = 12


async def _client(port: int, worker: int, acked: dict[str, bytes], sent: set[bytes]) -> None:
    """Send messages until the connection breaks; record each body that got a 250 under its id."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    try:
        await reader.readline()
        writer.write(b"EHLO crash.example\r\n")
        while (await reader.readline())[3:4] != b" ":
            pass
        n = 0
        while True:
            n += 1
            body = (
                f"Subject: crash test {worker}-{n}\r\n\r\n".encode()
                + random.randbytes(256).hex().encode()
                + b"\r\n"
            )
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


async def _check_queue(data_dir: Path, acked: dict[str, bytes], sent: set[bytes]) -> int:
    queue = SqliteQueue(data_dir / "queue")
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


async def test_sigkill_never_loses_an_acknowledged_message(tmp_path: Path) -> None:
    process = PostierProcess(tmp_path, make_config(tmp_path / "var", log={"level": "warning"}))
    acked: dict[str, bytes] = {}
    sent: set[bytes] = set()
    rng = random.Random(5321)
    try:
        for _round in range(ROUNDS):
            await asyncio.to_thread(process.start)
            port = process.ports["smtp"]
            clients = [asyncio.create_task(_client(port, w, acked, sent)) for w in range(CLIENTS)]
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            process.kill()
            await asyncio.gather(*clients)
        assert len(acked) > ROUNDS, "the clients should have had many messages acknowledged"
        stored = await _check_queue(tmp_path / "var", acked, sent)
        assert stored >= len(acked)
    finally:
        process.kill()
