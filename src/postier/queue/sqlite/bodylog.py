"""Large message bodies in an append-only body log: ``<queue dir>/bodies/NNNNNNNN.log`` segments.

Theory of operation. In the database, a 100 KiB body costs SQLite a few dozen 4 KiB pages written
twice — into the WAL at the commit, then into the database at the checkpoint — and the kernel a
copy each time (measured: about half of the queue's CPU time per message, docs/benchmarks.md). A
body of at least ``min_bytes`` octets is instead appended, in one ``write``, to the current segment
of the body log, and a row ``body_refs(message_id, segment, start, length)`` in the same
transaction says where it is. The order of events in the writer thread keeps "250 means durable":

1. the jobs insert their message rows (a duplicate id fails here, before any byte is written),
   append their bodies to the segment (``append_many``: the large bodies of a group commit in one
   ``pwritev``) and insert their ``body_refs`` rows;
2. ``before_commit``: one ``fdatasync`` of the segment for the whole group commit (and one fsync of
   the directory when the group created the segment);
3. ``COMMIT`` (the WAL's fsync); only after it does a session answer 250.

A crash before 3 leaves bytes no row points to at the end of a segment: harmless garbage. A job that
fails after its append, or a batch that rolls back, truncates the segment back to where it was.

Segments. Each process that has the queue open (the workers of a server, a ``postier queue`` tool)
appends to a segment of its own, which it starts — the highest number in the directory plus one,
created with ``O_EXCL`` (taken already: the next number) — at its first large body after opening
the queue and whenever its current one has reached ``segment_bytes``. It holds an exclusive
``flock`` on the segment it appends to, taken right after creating it and released when it moves on
or closes (or dies: the kernel releases it). A segment is removed once no ``body_refs`` row points
into it (checked when rows are deleted, and at open), unless it is the newest in the directory or
somebody holds its lock: the remover opens it and tries ``flock(LOCK_EX | LOCK_NB)`` first, which
fails while any appender — this process included, the lock belongs to the other open file — has it.
A message deferred for days keeps its whole segment on disk until it is done: the price of writing
each byte once.

Several processes. Creating a segment (inside a job) and removing one (inside a job, or in
``after_commit``) both happen in the writer thread while it holds the queue's writer lock
(``writer.py``), so no other process runs a batch meanwhile: a segment is never seen between its
creation and its lock, and a check "no row points into it" stays true until the removal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from postier.mail.errors import DamagedBodyError
from postier.queue.sqlite.writer import map_error
from postier.safeio import fsync_dir, pwritev_all
from postier.spool import MessageBody

__all__ = ["BodyLog"]

_SUFFIX = ".log"


def _remove_unlocked(path: Path) -> bool:
    """Remove a segment unless an appender holds its lock (or it is gone already); True: removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
    except OSError:  # held (BlockingIOError), or removed meanwhile
        return False
    finally:
        os.close(fd)
    return True


def _write_bodies(fd: int, bodies: list[bytes | MessageBody], offset: int) -> None:
    """In-memory bodies by ``pwritev`` (neighbours together), spooled ones by ``copy_to``."""
    run: list[bytes] = []
    for body in bodies:
        if isinstance(body, bytes):
            run.append(body)
            continue
        if run:
            pwritev_all(fd, run, offset)
            offset += sum(len(b) for b in run)
            run = []
        offset += body.copy_to(fd, offset)
    if run:
        pwritev_all(fd, run, offset)


class BodyLog:
    """The body log of one queue. Every method but ``open``/``close`` runs in the writer thread."""

    def __init__(self, directory: Path, min_bytes: int, segment_bytes: int = 64 << 20) -> None:
        self.directory = directory
        self.min_bytes = min_bytes
        self.segment_bytes = segment_bytes
        self._fd = -1  # the segment being appended to, or -1 before the first large body
        self._segment = 0
        self._size = 0  # its length in octets
        self._batch_start: int | None = None  # its length when the batch in progress began
        self._created = False  # the batch in progress created it: fsync the directory too
        self._doomed: list[Path] = []  # segments to remove once the batch in progress commits

    def wants(self, body: bytes | MessageBody) -> bool:
        return self.min_bytes > 0 and len(body) >= self.min_bytes

    def segment_path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}{_SUFFIX}"

    def open(self) -> None:
        """Create the directory (durably). Runs before the writer starts."""
        created = not self.directory.exists()
        self.directory.mkdir(exist_ok=True)
        if created:
            fsync_dir(self.directory.parent)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases its lock
            self._fd = -1

    def _segments(self) -> list[int]:
        found = []
        for entry in os.scandir(self.directory):
            stem = entry.name.removesuffix(_SUFFIX)
            if entry.name.endswith(_SUFFIX) and stem.isdigit():
                found.append(int(stem))
        return sorted(found)

    def _start_segment(self) -> None:
        if self._fd >= 0:  # full: make what this batch wrote to it durable before leaving it
            os.fdatasync(self._fd)
            os.close(self._fd)  # and its lock: once unused, it may go
            self._fd = -1
        segment = max(self._segments(), default=0) + 1
        while True:
            try:
                fd = os.open(
                    self.segment_path(segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                )
            except FileExistsError:  # another process took this number first
                segment += 1
                continue
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it open
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._segment, self._size, self._created = segment, 0, True
        self._batch_start = 0

    def append(self, body: bytes | MessageBody) -> tuple[int, int]:
        """Append one body; returns (segment, start). Durable only after ``before_commit``."""
        segment, starts = self.append_many([body])
        return segment, starts[0]

    def append_many(self, bodies: list[bytes | MessageBody]) -> tuple[int, list[int]]:
        """Append several bodies in one ``pwritev`` (one GIL round trip for the writer thread);
        returns the segment and each body's start. A segment may outgrow ``segment_bytes`` by one
        group: the group is never split. A spooled body (``MessageBody``) is copied from its spool
        file in the kernel (``copy_file_range``), never through memory."""
        try:
            if self._fd < 0 or self._size >= self.segment_bytes:
                self._start_segment()
            if self._batch_start is None:
                self._batch_start = self._size
            first = start = self._size
            starts = []
            for body in bodies:
                starts.append(start)
                start += len(body)
            _write_bodies(self._fd, bodies, first)
        except OSError as exc:
            raise map_error(exc) from None
        self._size = start
        return self._segment, starts

    def forget(self, segment: int, start: int) -> None:
        """The job that appended at ``start`` failed: cut the segment back (it was the last append)."""
        if segment == self._segment and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            self._size = start

    def doom_if_unused(self, conn: sqlite3.Connection, segments: set[int]) -> None:
        """Among ``segments`` (some of whose rows this batch deleted), remove after the commit those
        that no row points into any more — never the newest segment."""
        if not segments:
            return
        newest = max([*self._segments(), self._segment])
        for segment in segments:
            if segment >= newest:
                continue
            row = conn.execute("SELECT 1 FROM body_refs WHERE segment = ? LIMIT 1", (segment,)).fetchone()
            if row is None:
                self._doomed.append(self.segment_path(segment))

    def sweep(self, conn: sqlite3.Connection) -> None:
        """At open: remove the segments no row points into (but the newest, and those appended to)."""
        used = {row[0] for row in conn.execute("SELECT DISTINCT segment FROM body_refs")}
        for segment in self._segments()[:-1]:
            if segment not in used:
                _remove_unlocked(self.segment_path(segment))

    def read(self, conn: sqlite3.Connection, qid: str) -> bytes | None:
        """The body of ``qid`` from its segment, or None when it has no ``body_refs`` row."""
        row = conn.execute(
            "SELECT segment, start, length FROM body_refs WHERE message_id = ?", (qid,)
        ).fetchone()
        if row is None:
            return None
        segment, start, length = row
        try:
            fd = os.open(self.segment_path(segment), os.O_RDONLY)
        except FileNotFoundError:
            lost = f"the body of {qid} is lost: body-log segment {segment} is missing"
            raise DamagedBodyError(lost) from None
        except OSError as exc:
            raise map_error(exc) from None
        try:
            data = os.pread(fd, length, start)
        finally:
            os.close(fd)
        if len(data) != length:
            raise DamagedBodyError(f"the body of {qid} is lost: body-log segment {segment} is too short")
        return data

    # --- the writer's commit hooks ---------------------------------------------------------------

    def before_commit(self) -> None:
        if self._batch_start is not None and self._size > self._batch_start:
            os.fdatasync(self._fd)
        if self._created:
            fsync_dir(self.directory)

    def after_commit(self) -> None:
        self._batch_start, self._created = None, False
        doomed, self._doomed = self._doomed, []
        for path in doomed:
            _remove_unlocked(path)

    def after_rollback(self) -> None:
        if self._batch_start is not None and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._batch_start)
            self._size = self._batch_start
        self._batch_start, self._created, self._doomed = None, False, []
