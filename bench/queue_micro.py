"""``python -m bench.queue_micro``: the queue's write path alone, without SMTP.

Many asyncio tasks each enqueue messages in a loop into a fresh ``SqliteQueue`` on a real disk
(``--workdir``, default /var/tmp), as sessions do after the end of DATA: messages per second until
the last enqueue returned (durable), and messages per commit. ``--variant`` picks queue settings to
compare (each run alternates them: A B A B …, so a drift of the machine's load hits all alike).

    .venv/bin/python -m bench.queue_micro --size 102400 --tasks 20 --messages 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postier.mail.address import Address
from postier.mail.envelope import ClientInfo, Envelope, Recipient
from postier.queue import SqliteQueue

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "inline": {"body_log_min_bytes": 0},
    "log": {"body_log_min_bytes": 1},
}
"""Keyword arguments of ``SqliteQueue`` per variant name."""


def _envelope() -> Envelope:
    return Envelope(
        sender=Address("bench", "client.test"),
        recipients=(Recipient(Address("user", "bench.test")),),
        client=ClientInfo(ip="127.0.0.1", port=40000, helo="client.test", listener="127.0.0.1:2525"),
    )


def _body(size: int) -> bytes:
    line = b"X" * 78 + b"\r\n"
    return (line * (size // len(line) + 1))[:size]


async def _run(
    path: Path, options: dict[str, Any], size: int, tasks: int, messages: int
) -> tuple[float, float]:
    queue = SqliteQueue(path, **options)
    await queue.open()
    envelope, body = _envelope(), _body(size)
    left = [messages]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await queue.enqueue(envelope, body)

    try:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        commits = queue.stats_commits
    finally:
        await queue.close()
    return messages / elapsed, messages / max(1, commits), cpu / messages * 1000.0


def measure(workdir: Path, variant: str, size: int, tasks: int, messages: int) -> tuple[float, float, float]:
    """(messages per second, messages per commit, CPU ms per message) of one fresh queue."""
    root = Path(tempfile.mkdtemp(prefix=f"qmicro-{variant}-", dir=workdir))
    try:
        return asyncio.run(_run(root / "queue", VARIANTS[variant], size, tasks, messages))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None, register: Callable[[], None] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.queue_micro", description=__doc__)
    p.add_argument("--size", type=int, default=100 * 1024, help="body bytes (default 100 KiB)")
    p.add_argument("--tasks", type=int, default=20, help="concurrent enqueuers (default 20)")
    p.add_argument("--messages", type=int, default=2000, help="messages per measurement")
    p.add_argument("--rounds", type=int, default=3, help="rounds, variants alternating in each")
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="repeatable")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp"))  # noqa: S108 — a disk, not tmpfs
    args = p.parse_args(argv)
    names = args.variant or sorted(VARIANTS)
    got: dict[str, list[float]] = {n: [] for n in names}
    per_commit: dict[str, list[float]] = {n: [] for n in names}
    cpu_ms: dict[str, list[float]] = {n: [] for n in names}
    print(f"size={args.size} tasks={args.tasks} messages={args.messages} pid={os.getpid()}")
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            rate, batch, cpu = measure(args.workdir, name, args.size, args.tasks, args.messages)
            got[name].append(rate)
            per_commit[name].append(batch)
            cpu_ms[name].append(cpu)
            print(
                f"  round {r + 1} {name}: {rate:,.0f} msg/s, {batch:.1f} msgs/commit, {cpu:.3f} CPU ms/msg",
                flush=True,
            )
    for name in names:
        v = got[name]
        print(
            f"{name}: median {statistics.median(v):,.0f} msg/s (min {min(v):,.0f}, max {max(v):,.0f}),"
            f" {statistics.median(per_commit[name]):.1f} msgs/commit,"
            f" {statistics.median(cpu_ms[name]):.3f} CPU ms/msg"
        )


if __name__ == "__main__":
    main()
