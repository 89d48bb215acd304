"""``python -m bench.pg_ceiling``: what PostgreSQL itself can take of the queue's workload.

On a PostgreSQL of its own (``tests/pgcluster.py``), without SMTP:

1. commits: ``--connections`` connections each committing one-row transactions as fast as they can
   for ``--seconds``: the WAL flushes per second this disk allows (PostgreSQL flushes the commits
   waiting at one moment together, so more connections give more commits per flush);
2. lifecycle: ``--nodes`` ``PostgresQueue`` instances, each with 20 tasks enqueueing 1 KiB messages
   and one loop claiming and recording them delivered — every statement a message costs in a
   cluster, less the SMTP. Printed: messages per second, group commits per second, rows written per
   second (``pg_stat_database``), and PostgreSQL's CPU per message (every backend of the cluster):
   the cores PostgreSQL needs per 1,000 messages per second, from which docs/scale-out.md computes
   the node count at which the database becomes the limit.

    .venv/bin/python -m bench.pg_ceiling --messages 6000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from tests.pgcluster import private_cluster

from bench.cluster import _cpu_s, _postgres_pids
from bench.procs import PortPool
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import RecipientResult, RecipientState
from postier.queue.postgres import PostgresQueue


async def _commits(dsn: str, connections: int, seconds: float) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    await conns[0].execute("CREATE TABLE IF NOT EXISTS ticks (n bigint)")
    done = [0]
    stop = time.perf_counter() + seconds

    async def loop(conn: asyncpg.Connection) -> None:
        while time.perf_counter() < stop:
            await conn.execute("INSERT INTO ticks VALUES (1)")  # autocommit: one transaction each
            done[0] += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        await c.close()
    return done[0] / elapsed


async def _lifecycle(dsn: str, data: Path, nodes: int, messages: int) -> dict[str, float]:
    queues = [PostgresQueue(dsn, schema="bench", node=f"n{i}") for i in range(nodes)]
    for q in queues:
        await q.open()
    env = Envelope(Address("a", "client.test"), (Recipient(Address("u", "far.test")),))
    body = b"X" * 1024
    left = [messages]
    delivered = [0]

    async def sender(q: PostgresQueue) -> None:
        while left[0] > 0:
            left[0] -= 1
            await q.enqueue(env, body)

    async def deliverer(q: PostgresQueue) -> None:
        while delivered[0] < messages:
            claims = await q.claim(datetime.now(UTC) + timedelta(seconds=1), 60, 200)
            items = [r for c in claims for r in c.recipients]
            if not items:
                await asyncio.sleep(0.005)
                continue
            await q.record(
                [RecipientResult(r.message_id, r.index, RecipientState.DELIVERED, "250 ok") for r in items]
            )
            delivered[0] += len(items)

    stats = (
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    admin = await asyncpg.connect(dsn)
    await admin.execute("SELECT pg_stat_reset()")
    cpu = _cpu_s(_postgres_pids(data))
    start = time.perf_counter()
    await asyncio.gather(*(sender(q) for q in queues for _ in range(20)), *(deliverer(q) for q in queues))
    elapsed = time.perf_counter() - start
    cpu = _cpu_s(_postgres_pids(data)) - cpu
    await asyncio.sleep(0.6)  # the statistics collector's interval
    commits, rows = await admin.fetchrow(stats)
    group_commits = sum(q.stats_commits for q in queues)
    for q in queues:
        await q.close()
    await admin.close()
    return {
        "msg_per_s": messages / elapsed,
        "group_commits_per_s": group_commits / elapsed,
        "xacts_per_s": commits / elapsed,
        "rows_per_s": rows / elapsed,
        "pg_cpu_ms": cpu / messages * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, action="append")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--nodes", type=int, action="append")
    parser.add_argument("--messages", type=int, default=6000)
    args = parser.parse_args()
    ports = PortPool(43000)
    with private_cluster(ports.take()) as pg:
        for n in args.connections or [1, 8, 32]:
            print(
                f"commits: {n:>3} connections  {await _commits(pg.dsn, n, args.seconds):8.0f} commits/s",
                flush=True,
            )
        for n in args.nodes or [1, 3]:
            r = await _lifecycle(pg.dsn, pg.data, n, args.messages)
            print(
                f"lifecycle: {n} nodes  {r['msg_per_s']:7.0f} msg/s"
                f"  {r['group_commits_per_s']:6.0f} group commits/s"
                f"  {r['xacts_per_s']:7.0f} xacts/s  {r['rows_per_s']:7.0f} rows/s"
                f"  PG CPU {r['pg_cpu_ms']:.3f} ms/msg",
                flush=True,
            )
            conn = await asyncpg.connect(pg.dsn)
            await conn.execute("DROP SCHEMA bench CASCADE")
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
