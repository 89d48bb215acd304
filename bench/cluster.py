"""``python -m bench.cluster``: Postier nodes on one PostgreSQL queue, 1, 2 and 3 of them.

A PostgreSQL of its own (``tests/pgcluster.py``: initdb in a temp dir, another loopback port,
``pg_stat_statements`` loaded), one Postfix ``smtp-sink`` as the relay every node sends through, and
``smtp-source`` (``--sessions`` sessions per node, ``--messages`` messages of ``--size`` octets
per node) against each node at once. Measured per run:

- accepted: messages per second until every ``smtp-source`` is done (every 250 said);
- end to end: until every recipient is recorded delivered;
- CPU seconds of the Postier nodes and of PostgreSQL (every backend of the cluster), per message;
- statements per message (``pg_stat_statements``: calls of every statement, commits included) and
  transactions per message (``pg_stat_database``).

All processes share this machine's cores: compare per-core figures (messages per CPU-second).

    .venv/bin/python -m bench.cluster --nodes 1 --nodes 2 --nodes 3 --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import tomli_w
from tests.pgcluster import private_cluster

from bench.procs import PortPool, stop_process, wait_greeting

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _postgres_pids(data: Path) -> list[int]:
    main = int((data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split()
    return [main, *map(int, children)]


def _node_config(work: Path, name: str, dsn: str, sink: str, port: int, args: argparse.Namespace) -> Path:
    config = {
        "server": {"hostname": f"{name}.test", "data_dir": str(work / name), "node": name},
        "listener": [{"address": f"127.0.0.1:{port}", "mode": "smtp"}],
        "queue": {"backend": "postgres", "dsn": dsn, "pool_size": 10},
        "relay": {"local_domains": ["localhost"], "smarthost": sink, "smarthost_tls": "none"},
        "log": {"level": "warning"},
    }
    path = work / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


async def _sql(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def _wait_delivered(dsn: str, total: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    query = "SELECT count(*) FROM postier.recipients WHERE state = 'delivered'"
    while await _sql(dsn, query) < total:
        if time.monotonic() > deadline:
            raise TimeoutError("not every message was delivered")
        await asyncio.sleep(0.05)


def _source(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["smtp-source", "-d", "-s", str(args.sessions), "-m", str(args.messages), "-l", str(args.size),
         "-f", "bench@client.test", "-t", "user@far.test", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _run(count: int, args: argparse.Namespace, ports: PortPool) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="postier-cluster-") as tmp,
        private_cluster(ports.take(), "-c shared_preload_libraries=pg_stat_statements") as pg,
    ):
        work = Path(tmp)
        await _sql(pg.dsn, "CREATE EXTENSION pg_stat_statements")
        sink_port = ports.take()
        sink = subprocess.Popen(  # noqa: ASYNC220 - a bench driver: starting a child does not block
            ["smtp-sink", "-u", "root", f"127.0.0.1:{sink_port}", "256"], start_new_session=True
        )
        nodes: list[subprocess.Popen[bytes]] = []
        try:
            wait_greeting(sink_port, 10)
            node_ports = [ports.take() for _ in range(count)]
            for i, port in enumerate(node_ports):
                config = _node_config(work, f"n{i + 1}", pg.dsn, f"127.0.0.1:{sink_port}", port, args)
                cmd = [sys.executable, "-m", "postier", "serve", "--allow-root", "--config", str(config)]
                nodes.append(subprocess.Popen(cmd, start_new_session=True))  # noqa: ASYNC220 - as above
                wait_greeting(port, 30)
            await _sql(pg.dsn, "SELECT pg_stat_statements_reset()")
            await _sql(pg.dsn, "SELECT pg_stat_reset()")
            pids = [n.pid for n in nodes]
            node_cpu, pg_cpu = _cpu_s(pids), _cpu_s(_postgres_pids(pg.data))
            start = time.perf_counter()
            sources = [_source(port, args) for port in node_ports]
            for source in sources:
                _, err = await asyncio.to_thread(source.communicate)
                if source.returncode:
                    raise RuntimeError(f"smtp-source failed: {err.decode(errors='replace')}")
            accepted_s = time.perf_counter() - start
            total = count * args.messages
            await _wait_delivered(pg.dsn, total, 600)
            end_s = time.perf_counter() - start
            node_cpu, pg_cpu = _cpu_s(pids) - node_cpu, _cpu_s(_postgres_pids(pg.data)) - pg_cpu
            calls = await _sql(pg.dsn, "SELECT sum(calls) FROM pg_stat_statements")
            if args.top:
                conn = await asyncpg.connect(pg.dsn)
                rows = await conn.fetch(
                    "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)"
                    " FROM pg_stat_statements ORDER BY calls DESC LIMIT 25"
                )
                await conn.close()
                for row in rows:
                    print(f"{row[0]:>8} {row[1]:>9.0f}ms {row[2]:>8} {row[3]}")
            commits = await _sql(
                pg.dsn, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            for node in nodes:
                stop_process(node, 30)
            stop_process(sink, 10)
    return {
        "nodes": count,
        "accepted_per_s": total / accepted_s,
        "delivered_per_s": total / end_s,
        "node_cpu_ms": node_cpu / total * 1000,
        "pg_cpu_ms": pg_cpu / total * 1000,
        "per_cpu_s": total / (node_cpu + pg_cpu),
        "statements": float(calls) / total,
        "transactions": float(commits) / total,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, action="append", help="node counts to run (repeatable)")
    parser.add_argument("--messages", type=int, default=3000, help="messages per node")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source sessions per node")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--top", action="store_true", help="print the statements most called")
    args = parser.parse_args()
    ports = PortPool(41000)
    print(
        "nodes  accepted/s  delivered/s  node CPU ms/msg  PG CPU ms/msg  msg per CPU-s  stmts/msg  xacts/msg"
    )
    for _ in range(args.rounds):
        for count in args.nodes or [1, 2, 3]:
            r = await _run(count, args, ports)
            print(
                f"{count:>5}  {r['accepted_per_s']:>10.0f}  {r['delivered_per_s']:>11.0f}"
                f"  {r['node_cpu_ms']:>15.3f}  {r['pg_cpu_ms']:>13.3f}  {r['per_cpu_s']:>13.0f}"
                f"  {r['statements']:>9.2f}  {r['transactions']:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
