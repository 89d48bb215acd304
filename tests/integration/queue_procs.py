"""Child programs for ``test_queue_multiprocess.py``: several processes on one queue directory.

``python -m tests.integration.queue_procs enqueue DIR SHARD COUNT SEGMENT_BYTES``
    opens ``SqliteQueue(DIR, shard=SHARD)``, prints ``ready``, waits for a line on stdin, then
    enqueues COUNT messages from 8 tasks and prints ``qid index`` for each (body and domain follow
    from SHARD and index: ``message(shard, index)``).
``python -m tests.integration.queue_procs reap DIR STOP_FILE``
    prints ``ready``, waits for a line on stdin, then in rounds until STOP_FILE exists (and after
    it, until a round finds nothing due): opens the queue (which sweeps the body log), claims what
    is due, reads the body of each message to ``drop.test`` (prints ``read qid sha256``), records
    it delivered or deletes it (prints ``deleted qid``), purges the bodies of done messages, closes
    the queue.
``python -m tests.integration.queue_procs writer LOCK LOG DB JOBS``
    a bare ``Writer`` with the writer lock ``LOCK``: each job appends ``E pid held`` to LOG, the
    ``after_commit`` hook — after SQLite's own lock is released — appends ``X pid held`` (fsync'd);
    ``held`` is 1 when another open file of LOCK cannot take it then, else 0.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import random
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import QueueId, RecipientResult, RecipientState, SqliteQueue
from postier.queue.sqlite.writer import Writer

TASKS = 8
SMALL, LARGE = 1024, 20 * 1024


def message(shard: int, index: int) -> tuple[bytes, str]:
    """The body and recipient domain of message ``index`` of worker ``shard``: half 1 KiB (inline),
    half 20 KiB (body log); three in four of the large ones and half the small ones go to
    ``drop.test`` (the reaper delivers and purges them), the rest to ``keep.test``."""
    rng = random.Random(f"{shard}-{index}")
    large = rng.random() < 0.5
    drop = rng.random() < (0.75 if large else 0.5)
    return rng.randbytes(LARGE if large else SMALL), "drop.test" if drop else "keep.test"


def _envelope(domain: str) -> Envelope:
    return Envelope(Address("s", "x.test"), (Recipient(Address("r", domain)),))


async def enqueue(path: Path, shard: int, count: int, segment_bytes: int) -> None:
    queue = SqliteQueue(path, shard=shard, body_log_segment_bytes=segment_bytes, create=False)
    await queue.open()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    indexes = iter(range(count))
    done: list[str] = []

    async def task() -> None:
        for index in indexes:
            body, domain = message(shard, index)
            qid = await queue.enqueue(_envelope(domain), body)
            done.append(f"{qid} {index}")

    try:
        await asyncio.gather(*(task() for _ in range(TASKS)))
    finally:
        await queue.close()
    print("\n".join(done), flush=True)


async def _reap_once(path: Path) -> int:
    """One round; returns how many recipients it claimed."""
    queue = SqliteQueue(path, shard=31, create=False)
    await queue.open()
    try:
        now = datetime.now(UTC)
        claims = await queue.claim(now, lease_s=3600.0, limit=500)
        drops = [item for claim in claims if claim.domain == "drop.test" for item in claim.recipients]
        # All at once: the reads go in one batch of the writer (one turn of the writer lock).
        bodies = await asyncio.gather(*(queue.read_body(item.message_id) for item in drops))
        doomed, results = [], []
        for item, body in zip(drops, bodies, strict=True):
            print(f"read {item.message_id} {hashlib.sha256(body).hexdigest()}")
            if int(hashlib.sha256(item.message_id.encode()).hexdigest(), 16) % 5 == 0:
                doomed.append(item.message_id)
            else:
                results.append(RecipientResult(item.message_id, item.index, RecipientState.DELIVERED, "250"))
        await asyncio.gather(*(queue.delete(QueueId(qid)) for qid in doomed))
        print("".join(f"deleted {qid}\n" for qid in doomed), end="")
        await queue.record(results, now)
        await queue.purge(now + timedelta(seconds=1), keep_s=86400.0, keep_body_s=0.0)
    finally:
        await queue.close()
    sys.stdout.flush()
    return sum(len(claim.recipients) for claim in claims)


async def reap(path: Path, stop_file: Path) -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    while not stop_file.exists():
        await _reap_once(path)
    while await _reap_once(path):  # until nothing is due any more
        pass


def _held(lock: Path) -> int:
    """1 when somebody holds ``lock`` (this process's writer included: another open file conflicts)."""
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 1
    finally:
        os.close(fd)
    return 0


class _Hooks:
    def __init__(self, log_fd: int, lock: Path) -> None:
        self._log_fd = log_fd
        self._lock = lock

    def before_commit(self) -> None:
        pass

    def after_commit(self) -> None:
        os.write(self._log_fd, f"X {os.getpid()} {_held(self._lock)}\n".encode())
        os.fsync(self._log_fd)

    def after_rollback(self) -> None:
        os.write(self._log_fd, f"R {os.getpid()} {_held(self._lock)}\n".encode())


def _job(log_fd: int, lock: Path, conn: sqlite3.Connection) -> None:
    os.write(log_fd, f"E {os.getpid()} {_held(lock)}\n".encode())
    conn.execute("INSERT INTO t (pid) VALUES (?)", (os.getpid(),))


def _connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


async def write(lock: Path, log: Path, db: Path, jobs: int) -> None:
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    hooks = _Hooks(log_fd, lock)
    writer = Writer(partial(_connect, db), batch_max=4, name="w", hooks=hooks, lock_path=lock)
    writer.start()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)

    async def submit() -> None:
        future: asyncio.Future[Any] = loop.create_future()
        writer.put((partial(_job, log_fd, lock), future, loop))
        await future

    try:
        await asyncio.gather(*(submit() for _ in range(jobs)))
    finally:
        await writer.stop()
        os.close(log_fd)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "enqueue":
        asyncio.run(enqueue(Path(args[0]), int(args[1]), int(args[2]), int(args[3])))
    elif command == "reap":
        asyncio.run(reap(Path(args[0]), Path(args[1])))
    elif command == "writer":
        asyncio.run(write(Path(args[0]), Path(args[1]), Path(args[2]), int(args[3])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
