"""``PostgresQueue``: the ``Queue`` on one PostgreSQL database that several Postier nodes share.

One asyncpg pool per process; one writer task groups the enqueues of many sessions into one
transaction (``writer.py``); the other calls run on a pooled connection each (``ops.py``,
``reads.py``). One more connection LISTENs: another node's enqueue (or a tool's retry or release)
wakes this node's scheduler through ``subscribe``, so no node polls for new mail.

Failure: any database error or timeout (the server unreachable, restarting, out of disk) becomes
``QueueError`` (``QueueFullError`` for a full disk), which the server answers with 451 4.3.0 (452
4.3.1); nothing is acknowledged that was not committed. The pool opens new connections when the
old ones broke, and the LISTEN connection comes back on its own, so everything resumes once the
database is back. Nodes compare their own clocks with the leases: keep them in sync (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from postier.mail.envelope import Envelope
from postier.mail.errors import QueueError, QueueFullError
from postier.observe import get_logger
from postier.queue.codec import to_epoch
from postier.queue.ids import SHARDS, IdGenerator
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
from postier.queue.postgres import ops, reads
from postier.queue.postgres.schema import SCHEMA_VERSION, current_version, migrate
from postier.queue.postgres.slots import ClusterSlots
from postier.queue.postgres.writer import NOTIFY_CHANNEL, GroupWriter, Insert, Record
from postier.queue.protocol import DEFAULT_KEEP_BODY_S, DEFAULT_KEEP_S, Target
from postier.spool import MessageBody, as_bytes

__all__ = ["PostgresQueue", "safe_dsn"]

T = TypeVar("T")
_log = get_logger("postier.queue.postgres")
_RELISTEN_S = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def safe_dsn(dsn: str) -> str:
    """The DSN as it may be logged: any password in it replaced by ``***``."""
    scheme, sep, rest = dsn.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return dsn
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


async def _no_reset(_conn: Any) -> None:
    """A pooled connection goes back as it is: the queue never leaves session state on one (no
    session advisory locks, cursors, LISTEN or SET; its locks and settings are transaction-local).
    asyncpg's default reset is four statements at every release — more than a claim costs."""


def _shard(node: str, index: int) -> int:
    """The id shard of worker ``index`` of ``node``: nodes spread over the 32 shards by name."""
    return (sum(node.encode()) + index) % SHARDS


class PostgresQueue:
    """``dsn`` names the database, ``schema`` the namespace of the queue's tables (created and
    migrated at ``open`` unless ``create=False``: then a missing or outdated schema is an error).
    ``node`` goes into every lease and message row this process writes."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "postier",
        node: str = "",
        password: str | None = None,
        batch_max: int = 512,
        pool_size: int = 10,
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
        create: bool = True,
        worker: int = 0,
        slot_keep_s: float = 0.2,
    ) -> None:
        if not schema.isidentifier():
            raise ValueError(f"not a plain SQL identifier: {schema!r}")
        self._dsn, self._password, self.schema = dsn, password, schema
        self.node = node or socket.gethostname()
        self._batch_max, self._pool_size, self._timeout_s = batch_max, pool_size, timeout_s
        self._clock, self._create = clock, create
        self._new_id = IdGenerator(clock, shard=_shard(self.node, worker))
        self._pool: Any = None
        self._writer: GroupWriter | None = None
        self._subscribers: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._slots = ClusterSlots(self._connect_one, self._error, keep_s=slot_keep_s)

    @property
    def stats_commits(self) -> int:
        """Group commits so far (one WAL flush each): fewer than messages when commits group."""
        return 0 if self._writer is None else self._writer.commits

    def new_id(self) -> QueueId:
        return self._new_id()

    async def take_slot(self, key: str, limit: int) -> tuple[int, int] | None:
        """One of ``limit`` connection slots of destination ``key``, shared by every node
        (``slots.py``); None when all are taken."""
        return await self._slots.take(key, limit)

    async def give_slot(self, key: str, slot: tuple[int, int]) -> None:
        await self._slots.give(key, slot)

    async def _connect_one(self) -> Any:
        return await asyncpg.connect(self._dsn, **self._connect_args())

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when another node (or a tool) made recipients due: LISTEN/NOTIFY."""
        self._subscribers.append(wake)

    # --- life -----------------------------------------------------------------------------------

    def _connect_args(self) -> dict[str, Any]:
        return {
            "password": self._password,
            "timeout": self._timeout_s,
            "command_timeout": self._timeout_s,
            "server_settings": {"search_path": self.schema, "application_name": f"postier {self.node}"},
        }

    async def open(self) -> None:
        if self._pool is not None:
            raise QueueError("the queue is already open")
        try:
            pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, reset=_no_reset, **self._connect_args()
            )
        except Exception as exc:
            raise self._error(exc) from None
        try:
            async with pool.acquire() as conn:
                await self._check_schema(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._writer = GroupWriter(
            pool.acquire, node=self.node, batch_max=self._batch_max, errors=self._error
        )
        self._writer.start()
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="postier-queue-listen")

    async def _check_schema(self, conn: Any) -> None:
        try:
            if self._create:
                before, after = await migrate(conn, self.schema)
                if before != after:
                    _log.info("queue schema %s migrated from version %d to %d", self.schema, before, after)
                return
            version = await current_version(conn, self.schema)
        except RuntimeError as exc:
            raise QueueError(str(exc)) from None
        except Exception as exc:
            raise self._error(exc) from None
        if version == 0:
            raise QueueError(f"no queue in schema {self.schema} of {safe_dsn(self._dsn)}")
        if version != SCHEMA_VERSION:
            raise QueueError(
                f"queue schema version {version} is not {SCHEMA_VERSION}: run postier queue migrate"
            )

    async def close(self) -> None:
        await self._slots.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), self._timeout_s)

    async def _listen(self) -> None:
        """Keep one connection LISTENing; reconnect after it broke (the database restarted)."""
        while True:
            conn: Any = None
            try:
                conn = await self._connect_one()
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                self._wake_all()  # whatever came while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("queue LISTEN connection failed (%s); retrying", type(exc).__name__)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(_RELISTEN_S)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self.node:  # our own enqueues woke our scheduler already
            self._wake_all()

    def _wake_all(self) -> None:
        for wake in self._subscribers:
            wake()

    # --- plumbing -------------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> QueueError:
        if isinstance(exc, QueueError):
            return exc
        if isinstance(exc, asyncpg.DiskFullError):
            return QueueFullError("the queue database is out of disk space")
        detail = str(exc).splitlines()[0] if str(exc) else ""
        return QueueError(f"queue database: {type(exc).__name__} {detail}".rstrip())

    async def _run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        if self._pool is None:
            raise QueueError("the queue is not open")
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                return await work(conn)
        except QueueError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    def _now(self, now: datetime | None) -> float:
        return to_epoch(self._clock() if now is None else now)

    # --- the Queue interface --------------------------------------------------------------------

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
        if self._writer is None:
            raise QueueError("the queue is not open")
        qid = self.new_id() if queue_id is None else QueueId(queue_id)
        if isinstance(body, MessageBody):
            # The body goes to PostgreSQL as one bytea parameter: a spooled one is read whole, off the
            # loop. (Streaming it would need large objects or COPY; not built.)
            try:
                body = await asyncio.to_thread(as_bytes, body) if body.is_spooled else body.head
            except OSError as exc:
                raise QueueError(f"cannot read the spooled message: {exc.strerror or exc}") from None
        await self._writer.submit(Insert(qid, envelope, bytes(body), self._now(None), held=held))
        return qid

    async def claim(self, now: datetime, lease_s: float, limit: int) -> list[Claim]:
        return await self._run(lambda c: ops.claim(c, to_epoch(now), lease_s, limit, self.node))

    async def unlease(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        return await self._run(lambda c: ops.unlease(c, list(items), to_epoch(until), self.node))

    async def renew(self, items: Sequence[tuple[str, int]], until: datetime) -> int:
        """Extend this node's leases of ``items`` (deliveries still running) to ``until``."""
        return await self._run(lambda c: ops.renew(c, list(items), to_epoch(until), self.node))

    async def record(self, results: Sequence[RecipientResult], now: datetime | None = None) -> int:
        if self._writer is None:
            raise QueueError("the queue is not open")
        if not results:
            return 0
        applied: int = await self._writer.submit(Record(list(results), self._now(now)))
        return applied

    async def hold(self, target: Target) -> int:
        return await self._run(lambda c: ops.hold(c, target))

    async def release(self, target: Target) -> int:
        return await self._notifying(await self._run(lambda c: ops.release(c, target)))

    async def retry(self, target: Target, now: datetime | None = None) -> int:
        at = self._now(now)
        return await self._notifying(await self._run(lambda c: ops.retry(c, target, at)))

    async def _notifying(self, changed: int) -> int:
        """After a tool made recipients due: wake every node's scheduler (best effort)."""
        if changed:
            with contextlib.suppress(QueueError):
                await self._run(lambda c: c.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL))
        return changed

    async def delete(self, target: Target) -> int:
        return await self._run(lambda c: ops.delete(c, target))

    async def get(self, queue_id: str) -> MessageRecord:
        return await self._run(lambda c: reads.get(c, queue_id))

    async def read_body(self, queue_id: str) -> bytes:
        return await self._run(lambda c: reads.read_body(c, queue_id))

    async def list_messages(
        self, where: QueueFilter | None = None, *, limit: int | None = 1000
    ) -> list[MessageSummary]:
        return await self._run(lambda c: reads.list_messages(c, where or QueueFilter(), limit))

    async def count_messages(self, where: QueueFilter | None = None) -> int:
        return await self._run(lambda c: reads.count_messages(c, where or QueueFilter()))

    async def stats(self, now: datetime | None = None) -> QueueStats:
        at = self._now(now)
        return await self._run(lambda c: reads.stats(c, at))

    async def leases(self, now: datetime | None = None) -> dict[str, int]:
        """Recipients each node is delivering now (holds a live lease on): the cluster at a glance."""
        at = self._now(now)
        return await self._run(lambda c: reads.leases(c, at))

    async def purge(
        self,
        now: datetime | None = None,
        *,
        keep_s: float = DEFAULT_KEEP_S,
        keep_body_s: float = DEFAULT_KEEP_BODY_S,
    ) -> PurgeResult:
        at = self._now(now)
        return await self._run(lambda c: ops.purge(c, at, keep_s, keep_body_s))
