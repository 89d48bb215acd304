"""The SQLite queue's body log: large bodies appended to segments, segments removed once unused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import QueueError, QueueFilter, RecipientResult, RecipientState, SqliteQueue
from postier.queue.sqlite.bodylog import BodyLog

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ENV = Envelope(Address("a", "x.test"), (Recipient(Address("b", "y.test")),))


def segments(queue: SqliteQueue) -> list[str]:
    return sorted(p.name for p in (queue.path / "bodies").iterdir())


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    # Bodies of 1 kB and more go to the log; a segment is full after 10 kB.
    q = SqliteQueue(tmp_path / "queue", body_log_min_bytes=1000, body_log_segment_bytes=10_000)
    await q.open()
    yield q
    await q.close()


async def test_small_bodies_stay_inline_and_large_ones_go_to_the_log(queue: SqliteQueue) -> None:
    small, large = os.urandom(999), os.urandom(5000)
    a, b = await queue.enqueue(ENV, small), await queue.enqueue(ENV, large)
    assert await queue.read_body(a) == small
    assert await queue.read_body(b) == large
    assert segments(queue) == ["00000001.log"]
    assert (queue.path / "bodies" / "00000001.log").stat().st_size == 5000


async def test_a_group_commit_stores_large_and_small_bodies_together(tmp_path: Path) -> None:
    """Concurrent enqueues share group commits (store.Insert.many): the large bodies of a group
    are appended in one write, the small ones stay inline, and each reads back as it was sent."""
    q = SqliteQueue(tmp_path / "queue", body_log_min_bytes=1000)
    await q.open()
    try:
        bodies = [os.urandom(2000 + i) if i % 3 else os.urandom(500 + i) for i in range(60)]
        ids = await asyncio.gather(*(q.enqueue(ENV, body) for body in bodies))
        for qid, body in zip(ids, bodies, strict=True):
            assert await q.read_body(qid) == body
        logged = sum(len(b) for b in bodies if len(b) >= 1000)
        assert sum(p.stat().st_size for p in (q.path / "bodies").iterdir()) == logged
    finally:
        await q.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=1500), st.integers(0, 5))
@example(bodies=[bytes([i % 256]) * (i % 7) for i in range(2100)], before=3)
def test_append_many_writes_every_body_in_order_past_the_iovec_limit(
    tmp_path_factory: pytest.TempPathFactory, bodies: list[bytes], before: int
) -> None:
    """One ``pwritev`` takes at most 1,024 buffers: a longer group is written in several, in order,
    and each body starts where the one before it ended (empty bodies included)."""
    log = BodyLog(tmp_path_factory.mktemp("bodies"), min_bytes=1)
    log.open()
    try:
        if before:
            log.append(b"x" * before)
        segment, starts = log.append_many(bodies)
        data = log.segment_path(segment).read_bytes()
        assert data == b"x" * before + b"".join(bodies)
        assert [data[start : start + len(b)] for start, b in zip(starts, bodies, strict=True)] == bodies
    finally:
        log.close()


async def test_full_segments_roll_over_and_unused_ones_are_removed(queue: SqliteQueue) -> None:
    bodies = [os.urandom(4000 + i) for i in range(8)]
    ids = [await queue.enqueue(ENV, body) for body in bodies]
    assert segments(queue) == ["00000001.log", "00000002.log", "00000003.log"]
    for qid, body in zip(ids, bodies, strict=True):
        assert await queue.read_body(qid) == body
    await queue.delete(ids[0])  # segment 1 still holds ids[1] and ids[2]
    assert segments(queue) == ["00000001.log", "00000002.log", "00000003.log"]
    for qid in ids[1:6]:
        await queue.delete(qid)
    assert segments(queue) == ["00000003.log"]  # 1 and 2 emptied; 3 is the newest, appended to
    assert await queue.read_body(ids[7]) == bodies[7]


async def test_the_newest_segment_is_kept_even_when_empty(queue: SqliteQueue) -> None:
    qid = await queue.enqueue(ENV, os.urandom(3000))
    await queue.delete(qid)
    assert segments(queue) == ["00000001.log"]
    again = os.urandom(3000)
    assert await queue.read_body(await queue.enqueue(ENV, again)) == again


async def test_purged_bodies_free_their_segments(queue: SqliteQueue) -> None:
    ids = [await queue.enqueue(ENV, os.urandom(6000)) for _ in range(3)]
    done_at = T0 + timedelta(minutes=1)
    await queue.record([RecipientResult(qid, 0, RecipientState.DELIVERED, "250 ok") for qid in ids], done_at)
    result = await queue.purge(done_at + timedelta(days=2), keep_s=7 * 86400.0, keep_body_s=86400.0)
    assert result.bodies == 3
    assert segments(queue) == ["00000002.log"]  # 1 held two bodies; 2, the newest, is kept
    with pytest.raises(QueueError, match="purged"):
        await queue.read_body(ids[0])
    assert (await queue.get(ids[0])).has_body is False


async def test_a_duplicate_id_writes_nothing_and_keeps_the_first_body(queue: SqliteQueue) -> None:
    first = os.urandom(3000)
    qid = await queue.enqueue(ENV, first)
    with pytest.raises(QueueError):
        await queue.enqueue(ENV, os.urandom(3000), queue_id=qid)
    assert await queue.read_body(qid) == first
    assert (queue.path / "bodies" / "00000001.log").stat().st_size == 3000


async def test_a_damaged_segment_is_an_error_not_wrong_bytes(queue: SqliteQueue) -> None:
    qid = await queue.enqueue(ENV, b"x" * 3000)
    path = queue.path / "bodies" / "00000001.log"
    path.write_bytes(b"y" * 3000)
    with pytest.raises(QueueError, match="hash"):
        await queue.read_body(qid)


async def test_reopening_starts_a_new_segment_and_sweeps_unused_ones(tmp_path: Path) -> None:
    path = tmp_path / "queue"
    q = SqliteQueue(path, body_log_min_bytes=1000)
    await q.open()
    keep = await q.enqueue(ENV, b"k" * 2000)
    await q.close()
    (path / "bodies" / "00000002.log").write_bytes(b"left by a crash")  # no row points into it
    (path / "bodies" / "00000003.log").write_bytes(b"the newest: never removed")
    q = SqliteQueue(path, body_log_min_bytes=1000)
    await q.open()
    try:
        assert sorted(p.name for p in (path / "bodies").iterdir()) == ["00000001.log", "00000003.log"]
        new = await q.enqueue(ENV, b"n" * 2000)
        assert (path / "bodies" / "00000004.log").exists()
        assert await q.read_body(keep) == b"k" * 2000
        assert await q.read_body(new) == b"n" * 2000
        assert len(await q.list_messages(QueueFilter())) == 2
    finally:
        await q.close()


async def test_a_segment_another_queue_appends_to_is_never_removed(tmp_path: Path) -> None:
    # Two queues on one directory, as two worker processes (flock locks conflict between open files
    # in one process too): each appends to a segment of its own.
    path = tmp_path / "queue"
    first, second = (SqliteQueue(path, body_log_min_bytes=1000, shard=k) for k in (0, 1))
    await first.open()
    await second.open()
    try:
        a = await first.enqueue(ENV, b"a" * 2000)  # segment 1, first's
        b = await second.enqueue(ENV, b"b" * 2000)  # segment 2, second's: the newest
        await second.delete(a)  # no row points into segment 1, but first still appends to it
        assert segments(first) == ["00000001.log", "00000002.log"]
        sweeper = SqliteQueue(path, body_log_min_bytes=1000, shard=2)
        await sweeper.open()  # sweeps: segment 1 is unused and not the newest, but locked
        await sweeper.close()
        c = await first.enqueue(ENV, b"c" * 2000)
        assert segments(first) == ["00000001.log", "00000002.log"]
        assert (await first.read_body(c), await second.read_body(b)) == (b"c" * 2000, b"b" * 2000)
        await first.delete(c)  # first's own segment: kept while first has it open
        assert segments(first) == ["00000001.log", "00000002.log"]
    finally:
        await first.close()
        await second.close()
    sweeper = SqliteQueue(path, body_log_min_bytes=1000)
    await sweeper.open()  # nobody appends to segment 1 any more
    await sweeper.close()
    assert segments(sweeper) == ["00000002.log"]


async def test_each_queue_appends_to_its_own_new_segment(tmp_path: Path) -> None:
    path = tmp_path / "queue"
    queues = [
        SqliteQueue(path, body_log_min_bytes=1000, body_log_segment_bytes=4000, shard=k) for k in range(3)
    ]
    for q in queues:
        await q.open()
    try:
        bodies = {}
        for round_no in range(3):
            for k, q in enumerate(queues):
                body = bytes([65 + k]) * (2000 + round_no)
                bodies[await q.enqueue(ENV, body)] = body
        # 3 bodies each, a segment full after 2: segments 1-3 (one each), then 4-6.
        assert segments(queues[0]) == [f"{n:08d}.log" for n in range(1, 7)]
        for qid, body in bodies.items():
            assert await queues[0].read_body(qid) == body
    finally:
        for q in queues:
            await q.close()
