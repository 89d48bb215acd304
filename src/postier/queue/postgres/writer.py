"""Group commit on PostgreSQL: many sessions' enqueues in one transaction.

Theory of operation. ``enqueue`` builds its rows in the caller (``Insert``) and hands them to the
one writer task of the queue, then waits. The writer takes every job waiting (up to ``batch_max``)
and stores them in one transaction of four statements, whatever their number — one multi-row
insert per table from arrays (``unnest``) and one ``pg_notify`` that wakes the other nodes'
schedulers when the transaction commits. ``COMMIT`` returns once PostgreSQL has flushed its WAL
(``synchronous_commit`` on, or a standby's confirmation with a synchronous standby): only then are
the waiting futures resolved and the sessions answer 250. While one transaction commits the next
batch gathers, so an idle queue commits at once and a busy one groups more (no timer).

A duplicate id fails alone: the message rows go in with ``ON CONFLICT DO NOTHING RETURNING id``,
and the bodies and recipients only of those returned; a job whose id came back neither way (taken
already, or earlier in the same batch) gets ``QueueError``. A failure of the transaction itself
(the database unreachable, disk full, a timeout) fails every job of the batch — none was
acknowledged — and the writer goes on with the next batch on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from postier.mail.envelope import Envelope
from postier.mail.errors import QueueError
from postier.queue.codec import encode_envelope, encode_recipient
from postier.queue.model import QueueId, RecipientResult
from postier.queue.postgres.ops import record_rows

__all__ = ["NOTIFY_CHANNEL", "GroupWriter", "Insert", "Record"]

NOTIFY_CHANNEL = "postier_queue"
"""LISTEN/NOTIFY channel: due recipients were added (payload: the node that added them)."""

_INSERT_MESSAGES = (
    "INSERT INTO messages (id, arrived_at, sender, envelope, size, body_sha256, status, node)"
    " SELECT i, a, s, e, z, h, t, $7 FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[],"
    " $5::int[], $6::text[], $8::text[]) AS u(i, a, s, e, z, h, t) ON CONFLICT (id) DO NOTHING RETURNING id"
)
_INSERT_BODIES = "INSERT INTO bodies (message_id, data) SELECT * FROM unnest($1::text[], $2::bytea[])"
_INSERT_RECIPIENTS = (
    "INSERT INTO recipients (message_id, idx, local_part, domain, domain_key, notify, orcpt, state,"
    " attempts, next_attempt_at) SELECT m, i, l, d, k, n, o, 'queued', 0, a FROM unnest($1::text[],"
    " $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[])"
    " AS u(m, i, l, d, k, n, o, a)"
)


class Insert:
    """One enqueue: its rows, built in the caller's task (the body's hash too)."""

    __slots__ = ("body", "digest", "envelope", "now", "qid", "recipients", "sender", "status")

    def __init__(
        self, qid: QueueId, envelope: Envelope, body: bytes, now: float, *, held: bool = False
    ) -> None:
        self.qid, self.body, self.now = qid, body, now
        self.status = "held" if held else "active"  # held: quarantined, nothing delivered until released
        self.sender = "" if envelope.sender is None else str(envelope.sender)
        self.envelope = encode_envelope(envelope)
        self.digest = hashlib.sha256(body).hexdigest()
        self.recipients = [encode_recipient(r) for r in envelope.recipients]


Connect = Callable[[], Any]
"""An async context manager yielding a connection (the pool's ``acquire``)."""


class Record:
    """Outcomes to record (``Queue.record``), at ``now``: they share the group commit with the
    enqueues and the other deliveries' outcomes — each would cost a WAL flush of its own."""

    __slots__ = ("now", "results")

    def __init__(self, results: Sequence[RecipientResult], now: float) -> None:
        self.results, self.now = results, now


Job = Insert | Record


class GroupWriter:
    """The queue's one writing task. ``errors`` turns a database exception into a ``QueueError``."""

    def __init__(
        self,
        acquire: Connect,
        *,
        node: str,
        batch_max: int,
        errors: Callable[[BaseException], QueueError],
    ) -> None:
        self._acquire, self._node, self._batch_max = acquire, node, batch_max
        self._errors = errors
        self._jobs: list[tuple[Job, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="postier-queue-writer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._jobs:
            if not future.done():
                future.set_exception(QueueError("the queue is closed"))
        self._jobs.clear()

    def submit(self, job: Job) -> asyncio.Future[Any]:
        """The job's future: None for an ``Insert`` (stored), the count applied for a ``Record``."""
        if self._task is None:
            raise QueueError("the queue is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._jobs.append((job, future))
        self._ready.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            batch, self._jobs = self._jobs[: self._batch_max], self._jobs[self._batch_max :]
            if not self._jobs:
                self._ready.clear()
            try:
                outcome = await self._store([job for job, _ in batch])
            except Exception as exc:  # the transaction failed: no job of it was stored
                error = self._errors(exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for job, future in batch:
                if future.done():  # the session went away meanwhile
                    continue
                result = outcome.get(id(job))
                if isinstance(result, QueueError):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _store(self, jobs: Sequence[Job]) -> dict[int, Any]:
        """One transaction for ``jobs``; each job's result by ``id(job)``: None (stored), a count
        (outcomes applied) or a ``QueueError`` (its id was taken)."""
        inserts = [j for j in jobs if isinstance(j, Insert)]
        records = [j for j in jobs if isinstance(j, Record)]
        async with self._acquire() as conn, conn.transaction():
            outcome = await self._insert(conn, inserts) if inserts else {}
            if records:
                outcome.update(await _record(conn, records))
        self.commits += 1
        return outcome

    async def _insert(self, conn: Any, jobs: list[Insert]) -> dict[int, Any]:
        unique: dict[str, Insert] = {}
        for job in jobs:
            unique.setdefault(job.qid, job)
        first = list(unique.values())
        rows = await conn.fetch(
            _INSERT_MESSAGES,
            [j.qid for j in first],
            [j.now for j in first],
            [j.sender for j in first],
            [j.envelope for j in first],
            [len(j.body) for j in first],
            [j.digest for j in first],
            self._node,
            [j.status for j in first],
        )
        new = {row[0] for row in rows}
        stored = [j for j in first if j.qid in new]
        if stored:
            await conn.execute(_INSERT_BODIES, [j.qid for j in stored], [j.body for j in stored])
            await conn.execute(_INSERT_RECIPIENTS, *_recipient_columns(stored))
            await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, self._node)
        kept = {id(j) for j in stored}
        return {id(j): None if id(j) in kept else QueueError(f"queue id {j.qid} is taken") for j in jobs}


async def _record(conn: Any, jobs: list[Record]) -> dict[int, int]:
    """Every job's outcomes by one statement; how many of each job's were applied."""
    results = [(r, job.now) for job in jobs for r in job.results]
    applied = await record_rows(conn, results)
    counts: dict[int, int] = {}
    for job in jobs:
        mine = 0
        for r in job.results:
            if (r.message_id, r.index) in applied:
                applied.discard((r.message_id, r.index))  # one outcome counted once
                mine += 1
        counts[id(job)] = mine
    return counts


def _recipient_columns(jobs: Sequence[Insert]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(8)]
    mids, idxs, locals_, domains, keys, notifies, orcpts, due = columns
    for job in jobs:
        for i, (local, domain, key, notify, orcpt) in enumerate(job.recipients):
            mids.append(job.qid)
            idxs.append(i)
            locals_.append(local)
            domains.append(domain)
            keys.append(key)
            notifies.append(notify)
            orcpts.append(orcpt)
            due.append(job.now)
    return columns
