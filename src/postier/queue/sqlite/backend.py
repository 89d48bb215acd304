"""The embedded queue backend: one SQLite database in WAL mode under ``data_dir/queue/``.

Layout: ``<dir>/queue.db`` plus SQLite's ``queue.db-wal`` and ``queue.db-shm``, and ``<dir>/bodies/``,
the body log. Bodies under ``body_log_min_bytes`` (8 KiB) are stored inline (table ``bodies``): in a
group commit they share the WAL's one fsync. Larger ones are appended to the body log (``bodylog.py``),
written once instead of twice (WAL, then checkpoint), with one fdatasync per group commit (measured:
docs/benchmarks.md).

Durability: ``synchronous=FULL`` makes each COMMIT fsync the WAL before it returns; the directory is
fsync'd once the WAL exists, so the file itself survives a power cut.

Several processes (the workers of one server, the ``postier queue`` tools) may open the same queue,
each with its own ``SqliteQueue``: their writers take turns on ``<dir>/writer.lock`` (``writer.py``),
each appends to a body log segment of its own (``bodylog.py``), and each mints ids with its own
``shard`` (``ids.py``) so two of them never make the same id. ``busy_timeout`` stays as a backstop.

Reads — a record, listings, counts, statistics — run on a read-only connection of their own
(``reader.py``), never in the writer's batches; bodies are read by the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from postier.mail.envelope import Envelope
from postier.mail.errors import QueueError
from postier.queue.codec import to_epoch
from postier.queue.ids import IdGenerator
from postier.queue.model import (
    Claim,
    MessageRecord,
    MessageSummary,
    PurgeResult,
    QueueFilter,
    QueueId,
    QueueStats,
    RecipientResult,
)
from postier.queue.protocol import DEFAULT_KEEP_BODY_S, DEFAULT_KEEP_S, Target
from postier.queue.sqlite import reads, store
from postier.queue.sqlite.bodylog import BodyLog
from postier.queue.sqlite.reader import Reader
from postier.queue.sqlite.sql import SCHEMA, SCHEMA_VERSION
from postier.queue.sqlite.writer import Writer
from postier.safeio import fsync_dir
from postier.spool import MessageBody

__all__ = ["BODY_LOG_MIN_BYTES", "DB_NAME", "LOCK_NAME", "SqliteQueue"]

T = TypeVar("T")
DB_NAME = "queue.db"
LOCK_NAME = "writer.lock"
BODY_LOG_MIN_BYTES = 8 * 1024
"""Bodies of at least this many octets go to the body log (bodylog.py); 0: every body inline."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqliteQueue:
    """``path`` is the queue directory (``data_dir / "queue"``). ``create=False`` refuses to make a
    new queue (the tools use it, so a wrong ``--data-dir`` is an error, not an empty queue).
    ``shard`` (0 to 31) goes into every id this queue mints: processes sharing a queue directory
    each take a different one (the server's worker index)."""

    def __init__(
        self,
        path: Path | str,
        *,
        batch_max: int = 512,
        clock: Callable[[], datetime] = _utcnow,
        create: bool = True,
        busy_timeout_s: float = 10.0,
        body_log_min_bytes: int = BODY_LOG_MIN_BYTES,
        body_log_segment_bytes: int = 64 << 20,
        shard: int = 0,
    ) -> None:
        self.path = Path(path)
        self._log = BodyLog(self.path / "bodies", body_log_min_bytes, body_log_segment_bytes)
        self.db_path = self.path / DB_NAME
        self._clock = clock
        self._create = create
        self._busy_timeout_s = busy_timeout_s
        self._new_id = IdGenerator(clock, shard=shard)
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._batch_max = batch_max

    @property
    def stats_commits(self) -> int:
        """Transactions committed so far (one fsync each): fewer than messages when commits group."""
        return 0 if self._writer is None else self._writer.commits

    def new_id(self) -> QueueId:
        return self._new_id()

    async def open(self) -> None:
        if self._writer is not None:
            raise QueueError("the queue is already open")
        if not self._create and not self.db_path.exists():
            raise QueueError(f"no queue at {self.path}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"cannot create the queue directory {self.path}: {exc.strerror}") from None
        await asyncio.to_thread(self._log.open)
        self._writer = Writer(
            self._connect,
            batch_max=self._batch_max,
            name="postier-queue-writer",
            hooks=self._log,
            lock_path=self.path / LOCK_NAME,
        )
        self._writer.start()
        try:
            await self._submit(self._init_schema)
            await asyncio.to_thread(fsync_dir, self.path)
            await self._submit(self._sweep)
            self._reader = Reader(self._connect_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()
        self._log.close()

    def _sweep(self, conn: sqlite3.Connection) -> None:
        """Body log segments no message uses any more (deleted while a tool had the queue) go."""
        self._log.sweep(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        """The reader's connection (``reader.py``): the database is in WAL mode already."""
        return sqlite3.connect(
            self.db_path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )

    @staticmethod
    def _init_schema(conn: sqlite3.Connection) -> None:
        for statement in SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT MAX(version) FROM schema_info").fetchone()
        if row[0] is None:
            conn.execute("INSERT INTO schema_info (version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise QueueError(f"queue schema version {row[0]} is not {SCHEMA_VERSION}")

    async def _submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None:
            raise QueueError("the queue is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        writer.put((fn, future, loop))
        result: T = await future
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read on the reader's connection, off the writer (``reader.py``)."""
        reader = self._reader
        if reader is None:
            raise QueueError("the queue is not open")
        return await reader.run(fn)

    def _now(self, now: datetime | None) -> float:
        return to_epoch(self._clock() if now is None else now)

    async def enqueue(
        self,
        envelope: Envelope,
        body: bytes | MessageBody,
        *,
        queue_id: str | None = None,
        held: bool = False,
    ) -> QueueId:
        if not envelope.recipients:
            raise QueueError("a message needs at least one recipient")
        qid = self.new_id() if queue_id is None else QueueId(queue_id)
        if isinstance(body, MessageBody) and body.is_spooled and self._log.wants(body):
            try:  # the hash reads the spool: off the loop; the body log copies it in the kernel
                await asyncio.to_thread(body.sha256)
            except OSError as exc:
                raise QueueError(f"cannot read the spooled message: {exc.strerror or exc}") from None
        elif isinstance(body, MessageBody):
            body = body.read()
        else:
            body = bytes(body)
        now = self._now(None)
        # grouped with the other enqueues of the same commit (store.Insert.many)
        await self._submit(store.Insert(qid, envelope, body, now, self._log, held=held))
        return qid

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        return await self._submit(partial(store.claim, now=to_epoch(now), lease_s=lease_s, limit=limit))

    async def unlease(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        return await self._submit(partial(store.unlease, items=tuple(items), until=to_epoch(until)))

    async def renew(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        return await self._submit(partial(store.renew, items=tuple(items), until=to_epoch(until)))

    async def record(self, results: Sequence[RecipientResult], now: datetime | None = None) -> int:
        return await self._submit(partial(store.record, results=tuple(results), now=self._now(now)))

    async def hold(self, target: Target) -> int:
        return await self._submit(partial(store.hold, target=target))

    async def release(self, target: Target) -> int:
        return await self._submit(partial(store.release, target=target))

    async def retry(self, target: Target, now: datetime | None = None) -> int:
        return await self._submit(partial(store.retry, target=target, now=self._now(now)))

    async def delete(self, target: Target) -> int:
        return await self._submit(partial(store.delete, target=target, log=self._log))

    async def get(self, queue_id: str) -> MessageRecord:
        return await self._read(partial(reads.get, qid=QueueId(queue_id)))

    async def read_body(self, queue_id: str) -> bytes:
        return await self._submit(partial(reads.read_body, qid=QueueId(queue_id), log=self._log))

    async def list_messages(
        self, where: QueueFilter | None = None, *, limit: int | None = 1000
    ) -> list[MessageSummary]:
        where = QueueFilter() if where is None else where
        return await self._read(partial(reads.list_messages, where=where, limit=limit))

    async def count_messages(self, where: QueueFilter | None = None) -> int:
        where = QueueFilter() if where is None else where
        return await self._read(partial(reads.count_messages, where=where))

    async def stats(self, now: datetime | None = None) -> QueueStats:
        return await self._read(partial(reads.stats, now=self._now(now)))

    async def purge(
        self,
        now: datetime | None = None,
        *,
        keep_s: float = DEFAULT_KEEP_S,
        keep_body_s: float = DEFAULT_KEEP_BODY_S,
    ) -> PurgeResult:
        return await self._submit(
            partial(
                store.purge,
                now=self._now(now),
                keep_s=keep_s,
                keep_body_s=keep_body_s,
                log=self._log,
            )
        )
