"""Crash safety of the store: SIGKILL a process that enqueues from many tasks, at random moments.

The child prints ``id sha256 nrcpt`` the moment each ``enqueue`` returns — the moment a server would
say 250. After every kill the parent reopens the queue and checks that every printed id is there with
its exact bytes and recipients, and that every visible message is whole (body matches its hash,
recipients present): nothing partial, nothing acknowledged lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postier.queue import Queue, QueueFilter, QueueId, SqliteQueue
from postier.queue.postgres import PostgresQueue
from tests import pgtest

pytestmark = pytest.mark.integration

ROUNDS = 24

CHILD = """
import asyncio, hashlib, os, random, sys
from pathlib import Path
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import SqliteQueue

async def worker(q, rng):
    while True:
        size = rng.choice((200, 1024, 10_000, 100_000))
        body = os.urandom(size)
        n = rng.randint(1, 3)
        env = Envelope(Address("s", "x.test"), tuple(Recipient(Address(f"r{i}", "y.test")) for i in range(n)))
        qid = await q.enqueue(env, body)
        sys.stdout.write(f"{qid} {hashlib.sha256(body).hexdigest()} {n}\\n")
        sys.stdout.flush()

async def main():
    if sys.argv[1].startswith("postgres:"):
        from postier.queue.postgres import PostgresQueue
        q = PostgresQueue(sys.argv[3], schema=sys.argv[1].removeprefix("postgres:"), batch_max=64)
    else:
        q = SqliteQueue(Path(sys.argv[1]), batch_max=64)
    await q.open()
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    rng = random.Random(int(sys.argv[2]))
    await asyncio.gather(*(worker(q, random.Random(rng.random())) for _ in range(40)))

asyncio.run(main())
"""


def run_and_kill(
    script: Path, queue_dir: Path | str, seed: int, delay_s: float
) -> list[tuple[str, str, int]]:
    """Start the child, let it enqueue for ``delay_s`` after it is ready, SIGKILL it; the acks it printed.
    ``queue_dir``: an SQLite queue directory, or "postgres:SCHEMA" (in tests/pgtest.DSN)."""
    with subprocess.Popen(
        [sys.executable, str(script), str(queue_dir), str(seed), pgtest.DSN],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay_s)
        child.send_signal(signal.SIGKILL)
        out = child.stdout.read()
    acks = []
    for line in out.split(b"\n"):
        parts = line.decode().split()
        if len(parts) == 3:  # a line cut by the kill is not an acknowledgement
            acks.append((parts[0], parts[1], int(parts[2])))
    return acks


def _queue(queue_dir: Path | str) -> Queue:
    if isinstance(queue_dir, str):
        return PostgresQueue(pgtest.DSN, schema=queue_dir.removeprefix("postgres:"), create=False)
    return SqliteQueue(queue_dir, create=False)


async def check(queue_dir: Path | str, acks: dict[str, tuple[str, int]], since: datetime) -> int:
    """Every ack is there, whole; every message that arrived ``since`` is whole. Returns how many
    messages arrived since."""
    q = _queue(queue_dir)
    await q.open()
    try:
        for qid, (sha, nrcpt) in acks.items():
            record = await q.get(QueueId(qid))
            assert hashlib.sha256(await q.read_body(qid)).hexdigest() == sha
            assert len(record.recipients) == nrcpt
        visible = await q.list_messages(QueueFilter(arrived_after=since), limit=1_000_000)
        for summary in visible:  # also those committed but killed before they were acknowledged
            body = await q.read_body(summary.id)
            assert len(body) == summary.size and summary.recipients >= 1
        return len(visible)
    finally:
        await q.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_never_loses_an_acknowledged_message(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    queue_dir: Path | str = tmp_path / "queue"
    if backend == "postgres":
        asyncio.run(pgtest.require_pg())
        queue_dir = f"postgres:{pgtest.new_schema()}"
    try:
        _kill_rounds(script, queue_dir)
    finally:
        if isinstance(queue_dir, str):
            asyncio.run(pgtest.drop_schema(queue_dir.removeprefix("postgres:")))


def _kill_rounds(script: Path, queue_dir: Path | str) -> None:
    rng = random.Random(20250301)
    acks: dict[str, tuple[str, int]] = {}
    for round_no in range(ROUNDS):
        since = datetime.now(UTC) - timedelta(seconds=1)
        new = {
            qid: (sha, nrcpt)
            for qid, sha, nrcpt in run_and_kill(script, queue_dir, round_no, rng.uniform(0.0, 0.3))
        }
        assert asyncio.run(check(queue_dir, new, since)) >= len(new)
        acks.update(new)
    asyncio.run(check(queue_dir, acks, datetime.now(UTC)))  # later crashes damaged no earlier message
    assert len(acks) > ROUNDS  # the kills did land while enqueues were going on
