"""Several processes on one queue directory, as the workers of one server share it.

Real processes (``queue_procs.py``), no mocks: three enqueue at the same time, each with its own
``SqliteQueue`` and shard, large bodies rolling over small body log segments, while a fourth keeps
opening the queue (which sweeps the body log), delivering, deleting and purging. Afterwards every
message is there with its exact body, and the body log holds exactly the segments still used.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from postier.queue import MessageStatus, QueueError, QueueId, SqliteQueue
from tests.integration.queue_procs import message

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
MESSAGES = 400
SEGMENT_BYTES = 100_000  # five 20 KiB bodies


def child(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.queue_procs", *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def start_together(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every child has opened its queue, then let them all go at once."""
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> list[list[str]]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return [line.split() for line in out.splitlines() if line]


def segment_files(queue_dir: Path) -> set[int]:
    return {int(p.name.removesuffix(".log")) for p in (queue_dir / "bodies").iterdir()}


def used_segments(queue_dir: Path) -> set[int]:
    with sqlite3.connect(f"file:{queue_dir / 'queue.db'}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT segment FROM body_refs")}


async def create_queue(queue_dir: Path) -> None:
    queue = SqliteQueue(queue_dir)
    await queue.open()
    await queue.close()


async def check_queue(
    queue_dir: Path, sent: dict[str, tuple[int, int]], read: dict[str, str], deleted: set[str]
) -> tuple[int, int]:
    """Every message the workers enqueued is there (but those the reaper deleted) with its exact
    body, or done with its body purged; returns (bodies read back, bodies purged)."""
    queue = SqliteQueue(queue_dir, create=False)  # opening sweeps the body log once more
    await queue.open()
    kept = purged = 0
    try:
        for qid, (shard, index) in sent.items():
            body, domain = message(shard, index)
            if qid in read:  # the reaper read it while other processes kept appending
                assert read[qid] == hashlib.sha256(body).hexdigest()
            if qid in deleted:
                continue
            record = await queue.get(QueueId(qid))
            if domain == "keep.test":
                assert await queue.read_body(qid) == body
                kept += 1
            else:  # the reaper delivered it and purged its body
                assert qid in read
                assert record.status is MessageStatus.DONE and not record.has_body
                with pytest.raises(QueueError, match="purged"):
                    await queue.read_body(qid)
                purged += 1
    finally:
        await queue.close()
    return kept, purged


def test_workers_enqueue_into_one_queue_while_another_process_reaps(tmp_path: Path) -> None:
    queue_dir, stop = tmp_path / "queue", tmp_path / "stop"
    asyncio.run(create_queue(queue_dir))
    reaper = child("reap", queue_dir, stop)
    workers = [child("enqueue", queue_dir, shard, MESSAGES, SEGMENT_BYTES) for shard in range(WORKERS)]
    start_together([reaper, *workers])
    sent: dict[str, tuple[int, int]] = {}
    for shard, worker in enumerate(workers):
        lines = finish(worker)
        assert len(lines) == MESSAGES  # no enqueue failed (a colliding id would have: 451)
        sent.update({qid: (shard, int(index)) for qid, index in lines})
    assert len(sent) == WORKERS * MESSAGES  # ids unique across the processes
    stop.touch()
    reaped = finish(reaper)  # one more round once every worker is gone
    read = {line[1]: line[2] for line in reaped if line[0] == "read"}
    deleted = {line[1] for line in reaped if line[0] == "deleted"}

    kept, purged = asyncio.run(check_queue(queue_dir, sent, read, deleted))
    drops = sum(message(*where)[1] == "drop.test" for where in sent.values())
    assert len(read) == drops and kept + purged + len(deleted) == len(sent)
    # No segment a body is in was removed; every other one but the newest was (nobody appends now).
    files, used = segment_files(queue_dir), used_segments(queue_dir)
    assert files == used | {max(files)}
    assert max(files) > len(files)  # segments did roll over and get removed during the run


def test_two_writers_never_hold_the_writer_lock_at_once(tmp_path: Path) -> None:
    db, log = tmp_path / "t.db", tmp_path / "log"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (pid INTEGER)")
    writers = [child("writer", tmp_path / "writer.lock", log, db, 400) for _ in range(3)]
    start_together(writers)
    for writer in writers:
        finish(writer)
    lines = [line.split() for line in log.read_text().splitlines()]
    # Each batch: its jobs' E lines, then one X line from after_commit, outside SQLite's own lock
    # but inside the writer lock, which every job and hook saw held: another process's lines
    # never come in between.
    assert all(held == "1" for _, _, held in lines)
    for (kind, pid, _), (_, next_pid, _) in itertools.pairwise(lines):
        assert kind == "X" or pid == next_pid
    assert lines[-1][0] == "X"
    entered = Counter(pid for kind, pid, _ in lines if kind == "E")
    assert sorted(entered.values()) == [400] * 3
    assert not any(kind == "R" for kind, _, _ in lines)
