"""One writer thread, group commit.

Theory of operation. Every operation on the store (enqueue, claim, outcome, admin, read) is a job:
a function of the connection plus the asyncio future waiting for its result. The thread takes the
first waiting job, then every other job already waiting (at most ``batch_max``), and runs them all in
one transaction — ``BEGIN IMMEDIATE`` … ``COMMIT`` — each inside its own savepoint (neighbours that
share a ``many`` function, the enqueues, run as one call in one savepoint; a batch that is one job
or one such group needs no savepoint: it is rolled back whole if it fails). With WAL and
``synchronous=FULL`` the commit is one fsync of the WAL, shared by the whole batch; only after it
returns are the futures resolved (``loop.call_soon_threadsafe``), so a session says 250 only once its
message is on stable storage. There is no timer: while one batch is being synced the next one
gathers, so batching adds no latency when the queue is idle and grows by itself under load.

With the body log (``bodylog.py``) the writer calls ``hooks.before_commit`` between the last job and
``COMMIT`` (the log's fdatasync), ``after_commit`` once it returned and ``after_rollback`` when a batch
fails.

Several processes (``[server] workers``, and the ``postier queue`` tools) may each run a writer on the
same queue. With ``lock_path`` every batch — ``BEGIN IMMEDIATE``, the jobs, the hooks, ``COMMIT`` or
the rollback — runs under an exclusive ``flock`` of that file (``<queue dir>/writer.lock``), released
right after. A writer that finds it held sleeps in the kernel until it is free (the GIL released)
instead of in SQLite's busy handler, which polls in steps of 1, 2, 5, 10 … ms. ``busy_timeout`` stays
as a backstop for a writer without the lock. The lock also makes each batch's body log work (a new
segment, a removal) atomic with respect to every other writer.

A job that fails on its own (unknown id, duplicate id, a bug) is rolled back to its savepoint (or,
alone in its batch, with the whole transaction) and only its future gets the error. A failure of
the store itself — disk full, an I/O error, a lock held too long — rolls back the whole batch: every
job in it fails (``QueueFullError`` for a full disk, else ``QueueError``), nothing of it becomes
visible, and the next batch starts afresh (reopening the connection if the rollback failed too).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from postier.mail.errors import QueueError, QueueFullError

__all__ = ["CommitHooks", "Job", "Writer", "map_error"]

Conn = sqlite3.Connection
Job = tuple[Callable[[Conn], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]

_SQLITE_FULL = 13
_PER_JOB_SQL_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError)


def _own_error(exc: Exception) -> BaseException:
    """What a job that raised ``exc`` gets: its own failure (a constraint, a bug) as its error; a
    failure of the store itself (an I/O error, a full disk) is raised again — the whole batch goes."""
    if isinstance(exc, sqlite3.Error):
        if not isinstance(exc, _PER_JOB_SQL_ERRORS):
            raise exc
        return map_error(exc)
    return exc


class _AloneFailed(Exception):
    """The only unit of a batch, run without a savepoint, failed on its own account (``error``)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class CommitHooks(Protocol):
    """Work tied to each transaction of the writer (the body log): run in the writer thread."""

    def before_commit(self) -> None: ...

    def after_commit(self) -> None: ...

    def after_rollback(self) -> None: ...


def map_error(exc: BaseException) -> BaseException:
    """The queue error a storage failure becomes; other exceptions are kept as they are."""
    if isinstance(exc, sqlite3.Error):
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_FULL:
            return QueueFullError("the queue store is out of space")
        if isinstance(exc, sqlite3.IntegrityError):
            return QueueError(f"the queue refused the change: {exc}")
        return QueueError(f"queue store error: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return QueueFullError("the queue store is out of space")
        return QueueError(f"queue store I/O error: {exc.strerror or exc}")
    return exc


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the waiter was cancelled; the work is done (or not) all the same
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _settle_all(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        _settle(future, ok, value)


def _post_all(batch: list[Job], results: list[tuple[bool, Any]]) -> None:
    """Resolve a batch's futures with one wake-up of each waiting loop (not one per job)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for job, (ok, value) in zip(batch, results, strict=True):
        by_loop.setdefault(job[2], []).append((job[1], ok, value))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the waiting loop is already closed
            loop.call_soon_threadsafe(_settle_all, outcomes)


def _post(job: Job, ok: bool, value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the waiting loop is already closed
        job[2].call_soon_threadsafe(_settle, job[1], ok, value)


class Writer:
    """The thread that owns the store's connection. ``connect`` runs in the thread. With ``lock_path``
    each batch holds an exclusive ``flock`` of that file (created 0600 when missing): one batch at a
    time among all the writers of a queue, in every process."""

    def __init__(
        self,
        connect: Callable[[], Conn],
        *,
        batch_max: int,
        name: str,
        hooks: CommitHooks | None = None,
        lock_path: Path | None = None,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._connect = connect
        self._hooks = hooks
        self._lock_path = lock_path
        self._lock_fd = -1  # opened in the thread with the first batch, closed when it ends
        self._batch_max = batch_max
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.commits = 0
        self.jobs_done = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, job: Job) -> None:
        self._jobs.put(job)

    async def stop(self) -> None:
        """Finish every job already submitted, then close the connection and end the thread."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        conn: Conn | None = None
        running = True
        try:
            while running:
                batch, running = self._next_batch()
                if not batch:
                    continue
                if conn is None:
                    try:
                        self._open_lock()
                        conn = self._connect()
                    except (sqlite3.Error, OSError) as exc:
                        for job in batch:
                            _post(job, False, map_error(exc))
                        continue
                conn = self._run_batch(conn, batch)
        finally:
            if conn is not None:
                conn.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _open_lock(self) -> None:
        if self._lock_path is not None and self._lock_fd < 0:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _next_batch(self) -> tuple[list[Job], bool]:
        first = self._jobs.get()
        if first is None:
            return [], False
        batch = [first]
        while len(batch) < self._batch_max:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, False
            batch.append(job)
        return batch, True

    def _run_batch(self, conn: Conn, batch: list[Job]) -> Conn | None:
        """Run a batch in one transaction, under the writer lock; returns the connection to use next
        (None: reconnect). The futures are resolved once the lock is released."""
        fd = self._lock_fd
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            lock_error = map_error(exc)
            for job in batch:
                _post(job, False, lock_error)
            return conn
        try:
            results, error = self._transact(conn, batch)
            next_conn = conn if error is None else self._rollback(conn)
        finally:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if error is not None:
            for job in batch:
                _post(job, False, error)
            return next_conn
        self.jobs_done += len(batch)
        _post_all(batch, results)
        return next_conn

    def _transact(self, conn: Conn, batch: list[Job]) -> tuple[list[tuple[bool, Any]], BaseException | None]:
        """BEGIN IMMEDIATE, the jobs, the hooks, COMMIT: the results, or the error that failed the
        whole batch (then ``after_rollback`` has run; the caller rolls the transaction back)."""
        hooks = self._hooks
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = self._run_jobs(conn, batch)
            except _AloneFailed as failed:
                self._rollback_alone(conn)
                if len(batch) == 1:
                    return [(False, failed.error)], None  # nothing was written: nothing to commit
                conn.execute("BEGIN IMMEDIATE")  # the group failed: again, one savepoint per job
                results = [self._run_job(conn, job) for job in batch]
            if hooks is not None:
                hooks.before_commit()
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if hooks is not None:
                hooks.after_rollback()
            return [], map_error(exc)
        self.commits += 1
        if hooks is not None:
            hooks.after_commit()
        return results, None

    def _rollback_alone(self, conn: Conn) -> None:
        conn.execute("ROLLBACK")
        if self._hooks is not None:
            self._hooks.after_rollback()

    def _run_jobs(self, conn: Conn, batch: list[Job]) -> list[tuple[bool, Any]]:
        """Each job in its savepoint; but neighbours that share a ``many`` function (``store.Insert``)
        run as one call, in one savepoint. If that call fails on a job's account (a duplicate id),
        the group is rolled back and run again job by job, so only the culprit fails.

        A batch of one such unit — one job, or one group — runs without a savepoint (two statements
        fewer, each a GIL round trip for this thread, see ``store.Insert``): if it fails on its own
        account, ``_AloneFailed`` makes ``_transact`` roll the whole transaction back instead."""
        results: list[tuple[bool, Any]] = []
        i = 0
        while i < len(batch):
            many = getattr(batch[i][0], "many", None)
            j = i + 1
            while many is not None and j < len(batch) and getattr(batch[j][0], "many", None) is many:
                j += 1
            if j - i == len(batch):
                return self._run_alone(conn, batch, many if j - i > 1 else None)
            if j - i > 1:
                results += self._run_group(conn, batch[i:j], many)
            else:
                results.append(self._run_job(conn, batch[i]))
            i = j
        return results

    @staticmethod
    def _run_alone(conn: Conn, batch: list[Job], many: Any) -> list[tuple[bool, Any]]:
        try:
            if many is None:
                return [(True, batch[0][0](conn))]
            return [(True, value) for value in many(conn, [job[0] for job in batch])]
        except Exception as exc:
            raise _AloneFailed(_own_error(exc)) from None

    def _run_group(self, conn: Conn, group: list[Job], many: Any) -> list[tuple[bool, Any]]:
        conn.execute("SAVEPOINT grouped")
        try:
            values = many(conn, [job[0] for job in group])
        except Exception as exc:
            _own_error(exc)  # the store's own failure goes on up
            conn.execute("ROLLBACK TO grouped")
            conn.execute("RELEASE grouped")
            return [self._run_job(conn, job) for job in group]
        conn.execute("RELEASE grouped")
        return [(True, value) for value in values]

    @staticmethod
    def _run_job(conn: Conn, job: Job) -> tuple[bool, Any]:
        conn.execute("SAVEPOINT job")
        try:
            value = job[0](conn)
        except Exception as exc:
            error = _own_error(exc)
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return False, error
        conn.execute("RELEASE job")
        return True, value

    @staticmethod
    def _rollback(conn: Conn) -> Conn | None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            return None
        return conn
