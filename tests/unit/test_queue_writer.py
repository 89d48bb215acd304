"""The queue's writer thread on a real SQLite file: what a batch commits when one of its jobs fails.

Jobs are put before the thread starts, so the first batch holds all of them, deterministically."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from postier.mail.errors import QueueError
from postier.queue.sqlite.writer import Writer


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


class Put:
    """Insert one key; neighbouring ``Put`` jobs are stored by one call (like ``store.Insert``)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (k) VALUES (?)", (self.key,))
        return self.key

    @staticmethod
    def many(conn: sqlite3.Connection, jobs: Sequence[Put]) -> list[str]:
        conn.executemany("INSERT INTO t (k) VALUES (?)", [(j.key,) for j in jobs])
        return [j.key for j in jobs]


def _broken(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t (k) VALUES ('written before the bug')")
    raise ValueError("a bug in the job")


async def _run(path: Path, jobs: list[Any]) -> tuple[list[Any], list[str], int]:
    """Run ``jobs`` as one batch; returns their outcomes, the keys stored, and the commits made."""
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
    setup.commit()
    setup.close()
    loop = asyncio.get_running_loop()
    writer = Writer(lambda: _connect(path), batch_max=512, name="test-writer")
    futures = []
    for job in jobs:
        future: asyncio.Future[Any] = loop.create_future()
        writer.put((job, future, loop))
        futures.append(future)
    writer.start()
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    await writer.stop()
    check = sqlite3.connect(path)
    keys = [row[0] for row in check.execute("SELECT k FROM t ORDER BY k")]
    check.close()
    return outcomes, keys, writer.commits


async def test_a_lone_job_that_fails_leaves_nothing_and_commits_nothing(tmp_path: Path) -> None:
    outcomes, keys, commits = await _run(tmp_path / "q.db", [_broken])
    assert isinstance(outcomes[0], ValueError)
    assert keys == []
    assert commits == 0


async def test_a_lone_group_with_a_duplicate_is_run_again_job_by_job(tmp_path: Path) -> None:
    outcomes, keys, commits = await _run(tmp_path / "q.db", [Put("a"), Put("b"), Put("a"), Put("c")])
    assert outcomes[:2] == ["a", "b"] and outcomes[3] == "c"
    assert isinstance(outcomes[2], QueueError)  # the duplicate, and only it
    assert keys == ["a", "b", "c"]
    assert commits == 1


async def test_a_failing_job_beside_others_is_rolled_back_to_its_savepoint(tmp_path: Path) -> None:
    outcomes, keys, commits = await _run(tmp_path / "q.db", [Put("a"), Put("b"), _broken, Put("c")])
    assert outcomes[:2] == ["a", "b"] and outcomes[3] == "c"
    assert isinstance(outcomes[2], ValueError)
    assert keys == ["a", "b", "c"]  # not the row the broken job wrote before failing
    assert commits == 1


@pytest.mark.parametrize("jobs", [[Put("x")], [Put("x"), Put("y")]], ids=["one job", "one group"])
async def test_a_lone_job_or_group_that_succeeds_is_committed(tmp_path: Path, jobs: list[Put]) -> None:
    outcomes, keys, commits = await _run(tmp_path / "q.db", list(jobs))
    assert outcomes == [j.key for j in jobs]
    assert keys == sorted(j.key for j in jobs)
    assert commits == 1
