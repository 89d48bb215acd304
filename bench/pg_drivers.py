"""``python -m bench.pg_drivers``: asyncpg against psycopg 3 for the PostgreSQL queue's workload.

The workload of a Postier node on PostgreSQL, without SMTP: group commits of ``--group`` messages
(one multi-row insert per table: messages, bodies, recipients, from arrays with ``unnest``), then
the delivery side — claims of due recipients (``FOR UPDATE SKIP LOCKED``) and outcomes recorded.
Each driver runs in turn, ``--rounds`` times alternating, in a fresh schema of its own; printed:
messages per second and the client's CPU time per message (the process's, which is what a node
pays), for the enqueue phase and the claim + record phase, and the body sizes given.

    .venv/bin/python -m bench.pg_drivers --dsn postgresql://postgres@127.0.0.1/test --messages 4000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

SCHEMA = """
CREATE TABLE messages (id text PRIMARY KEY, arrived_at float8 NOT NULL, sender text NOT NULL,
  envelope text NOT NULL, size int NOT NULL, body_sha256 text NOT NULL, status text NOT NULL);
CREATE TABLE bodies (message_id text PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE recipients (message_id text NOT NULL, idx int NOT NULL, address text NOT NULL,
  domain_key text NOT NULL, state text NOT NULL, attempts int NOT NULL, next_attempt_at float8,
  lease_until float8, lease_node text, last_reply text, PRIMARY KEY (message_id, idx));
CREATE INDEX recipients_due ON recipients (next_attempt_at) WHERE state IN ('queued', 'deferred');
"""

INS_MSG = (
    "INSERT INTO messages SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[],"
    " $5::int[], $6::text[], $7::text[])"
)
INS_BODY = "INSERT INTO bodies SELECT * FROM unnest($1::text[], $2::bytea[])"
INS_RCPT = (
    "INSERT INTO recipients (message_id, idx, address, domain_key, state, attempts, next_attempt_at)"
    " SELECT m, i, a, d, 'queued', 0, $5 FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])"
    " AS u(m, i, a, d)"
)
CLAIM = (
    "WITH due AS (SELECT message_id, idx FROM recipients WHERE state IN ('queued', 'deferred')"
    " AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    " ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
    " UPDATE recipients r SET lease_until = $3, lease_node = 'bench' FROM due"
    " WHERE r.message_id = due.message_id AND r.idx = due.idx RETURNING r.message_id, r.idx, r.address"
)
RECORD = (
    "UPDATE recipients r SET state = 'delivered', attempts = attempts + 1, last_reply = '250 ok',"
    " lease_until = NULL FROM unnest($1::text[], $2::int[]) AS u(m, i)"
    " WHERE r.message_id = u.m AND r.idx = u.i AND r.state IN ('queued', 'deferred')"
)


def _psycopg_sql(sql: str) -> str:
    """``$n`` placeholders as psycopg's named ones (``%(pn)s``): a number may come out of order."""
    return re.sub(r"\$(\d+)", r"%(p\1)s", sql)


class Driver:
    """One driver behind three calls: a transaction of statements, and a query."""

    name = ""

    async def connect(self, dsn: str, schema: str) -> None: ...
    async def close(self) -> None: ...
    async def execute(self, sql: str) -> None: ...
    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]: ...


class Asyncpg(Driver):
    name = "asyncpg"

    async def connect(self, dsn: str, schema: str) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})

    async def close(self) -> None:
        await self.conn.close()

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)

    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        rows: list[Any] = []
        async with self.conn.transaction():
            for sql, args in statements:
                rows = await self.conn.fetch(sql, *args)
        return rows


class Psycopg(Driver):
    name = "psycopg"

    async def connect(self, dsn: str, schema: str) -> None:
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(dsn, options=f"-c search_path={schema}")

    async def close(self) -> None:
        await self.conn.close()

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)  # type: ignore[arg-type]
        await self.conn.commit()

    async def transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        rows: list[Any] = []
        async with self.conn.transaction(), self.conn.cursor() as cur:
            for sql, args in statements:
                params = {f"p{i + 1}": a for i, a in enumerate(args)}
                await cur.execute(_psycopg_sql(sql), params, prepare=True, binary=True)  # type: ignore[arg-type]
                rows = await cur.fetchall() if cur.description else []
        return rows


def _groups(messages: int, group: int, size: int, tag: str) -> list[list[tuple[str, tuple[Any, ...]]]]:
    body = os.urandom(size)
    out = []
    now = time.time()
    for g in range(0, messages, group):
        ids = [f"{tag}{g + i:012d}" for i in range(min(group, messages - g))]
        n = len(ids)
        out.append(
            [
                (
                    INS_MSG,
                    (
                        ids,
                        [now] * n,
                        ["a@x.test"] * n,
                        ['{"k":1}'] * n,
                        [size] * n,
                        ["0" * 64] * n,
                        ["active"] * n,
                    ),
                ),
                (INS_BODY, (ids, [body] * n)),
                (INS_RCPT, (ids, [0] * n, ["user@bench.test"] * n, ["bench.test"] * n, now)),
            ]
        )
    return out


async def _timed(work: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = await work()
    return time.perf_counter() - wall, time.process_time() - cpu, count


async def _one(driver: Driver, dsn: str, args: argparse.Namespace, size: int) -> dict[str, float]:
    schema = f"bench_{driver.name}_{os.getpid()}"
    await driver.connect(dsn, "public")
    await driver.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    await driver.close()
    await driver.connect(dsn, schema)
    try:
        await driver.execute(SCHEMA)
        groups = _groups(args.messages, args.group, size, driver.name[:2])

        async def enqueue() -> int:
            for statements in groups:
                await driver.transaction(statements)
            return args.messages

        async def deliver() -> int:
            done = 0
            while True:
                now = time.time() + 1
                rows = await driver.transaction([(CLAIM, (now, args.group, now + 300))])
                if not rows:
                    return done
                ids, idx = [r[0] for r in rows], [r[1] for r in rows]
                await driver.transaction([(RECORD, (ids, idx))])
                done += len(rows)

        w1, c1, n1 = await _timed(enqueue)
        w2, c2, n2 = await _timed(deliver)
        assert n2 == n1, (n1, n2)
        return {
            "enq_rate": n1 / w1,
            "enq_cpu_us": c1 / n1 * 1e6,
            "del_rate": n2 / w2,
            "del_cpu_us": c2 / n2 * 1e6,
        }
    finally:
        await driver.execute(f"DROP SCHEMA {schema} CASCADE")
        await driver.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--group", type=int, default=16, help="messages per group commit / claim")
    parser.add_argument("--size", type=int, action="append", help="body octets (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    drivers: list[Driver] = [Asyncpg(), Psycopg()]
    for size in args.size or [1024, 102400]:
        results: dict[str, list[dict[str, float]]] = {d.name: [] for d in drivers}
        for _ in range(args.rounds):
            for d in drivers:
                results[d.name].append(await _one(d, args.dsn, args, size))
        for name, runs in results.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{size:>7} B  {name:<8} enqueue {med['enq_rate']:8.0f} msg/s"
                f" {med['enq_cpu_us']:6.0f} CPU us/msg"
                f" | claim+record {med['del_rate']:8.0f} rcpt/s {med['del_cpu_us']:6.0f} CPU us/rcpt"
            )


if __name__ == "__main__":
    asyncio.run(main())
