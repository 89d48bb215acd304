"""One measurement per call: a fresh server instance, one client run, one number (or a few).

Theory of operation: ``run.py`` calls these in rounds, each server in turn (A B C A B C …), and
``results.Table`` collects the per-round values. Each function starts its own instance under a fresh
directory of ``Plan.workdir`` (the filesystem whose fsync rate is measured too) and stops it before
returning, so no server's queue or page cache state leaks into the next measurement.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import EmptySessions, hold_idle_sessions, latency_at_rate, smtp_source
from bench.procs import PortPool, tree_cpu_s, tree_memory
from bench.servers import ACCEPT_DOMAIN, RELAY_DOMAIN, Kind, start_sink

__all__ = [
    "PATTERNS",
    "AcceptCase",
    "ConnectFigures",
    "IdleFigures",
    "Plan",
    "acceptance",
    "connect",
    "fsync_rate",
    "idle",
    "latency",
    "relay",
    "relay_probe",
]

RCPT = f"user@{ACCEPT_DOMAIN}"


@dataclass(frozen=True)
class AcceptCase:
    name: str
    size: int
    sessions: int
    messages: int
    reuse: bool = True
    """Each session reuses its connection (smtp-source -d); False: one message per connection."""


PATTERNS = (("one message per connection", False), ("reused connections", True))
"""Both connection patterns, always side by side: an MX sees the first, submission and relays the second."""


@dataclass
class Plan:
    workdir: Path
    ports: PortPool
    cases: list[AcceptCase]
    relay_messages: int
    idle_sessions: int
    latency_count: int
    connect_sessions: int = 20_000
    connect_loops: int = 2
    """Client processes of the connect scenario (each an event loop)."""
    connect_concurrency: int = 10
    """Sessions at a time in each client process."""
    idle_probes: int = 300
    """New clients timed to their greeting while the idle sessions are held (for a p99)."""
    latency_rate: float = 100.0
    timeout_s: float = 900.0
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def root(self, kind: Kind) -> Path:
        return self.workdir / f"{kind.key}-{next(self._seq)}"


def plan_cases(quick: bool, only: list[str] | None = None, messages: int | None = None) -> list[AcceptCase]:
    """The acceptance cases; ``only`` keeps those whose name contains one of the texts."""
    n = messages or (2_000 if quick else 20_000)
    cases = [
        AcceptCase(f"{name}, {pattern}", size, sessions, n, reuse)
        for name, size, sessions in SHAPES
        for pattern, reuse in PATTERNS
    ]
    return [c for c in cases if not only or any(t in c.name for t in only)]


SHAPES = (
    ("1 KiB, 20 sessions", 1024, 20),
    ("1 KiB, 100 sessions", 1024, 100),
    ("100 KiB, 20 sessions", 100 * 1024, 20),
    ("100 KiB, 100 sessions", 100 * 1024, 100),
)
"""Every cell of issue 19's goals: 1 KiB and 100 KiB, 20 and 100 sessions (each in both PATTERNS)."""


@dataclass(frozen=True)
class Throughput:
    msg_per_s: float
    server_cpu_ms: float
    """CPU of the server's whole process tree (user + system, reaped children included) per message."""


def acceptance(kind: Kind, case: AcceptCase, plan: Plan) -> Throughput:
    """Durable acceptance: messages per second until the last 250 (smtp-source exits), and the server's
    CPU per message over the same time."""
    port = plan.ports.take()
    with kind.launch(plan.root(kind), port, None) as pid:
        cpu = tree_cpu_s(pid)
        elapsed = smtp_source(
            port,
            sessions=case.sessions,
            messages=case.messages,
            size=case.size,
            rcpt=RCPT,
            timeout_s=plan.timeout_s,
            reuse=case.reuse,
        )
        cpu = tree_cpu_s(pid) - cpu
    return Throughput(case.messages / elapsed, cpu * 1000 / case.messages)


def _relay_run(kind: Kind, plan: Plan, case: AcceptCase, wait_s: float) -> tuple[int, float, float]:
    """Returns (messages the sink counted, seconds from the first message in until the last counted,
    the server's CPU seconds meanwhile)."""
    sink_port, port = plan.ports.take(), plan.ports.take()
    with start_sink(sink_port) as sink, kind.launch(plan.root(kind), port, sink_port) as pid:
        cpu = tree_cpu_s(pid)
        start = time.perf_counter()
        smtp_source(
            port,
            sessions=case.sessions,
            messages=case.messages,
            size=case.size,
            rcpt=f"user@{RELAY_DOMAIN}",
            timeout_s=plan.timeout_s,
            reuse=case.reuse,
        )
        deadline = time.monotonic() + wait_s
        while sink.count < case.messages and time.monotonic() < deadline:
            time.sleep(0.005)
        return sink.count, time.perf_counter() - start, tree_cpu_s(pid) - cpu


def relay_probe(kind: Kind, plan: Plan) -> str | None:
    """One message through the server to a sink: None if it arrives, else why relay is unavailable."""
    counted, _, _ = _relay_run(kind, plan, AcceptCase("probe", 1024, 1, 1), 10.0)
    return (
        None
        if counted >= 1
        else "not available (no outbound delivery: 0 of 1 messages reached the sink in 10 s)"
    )


def relay_cases(plan: Plan) -> list[AcceptCase]:
    """The relay scenario's cases: the acceptance shapes chosen (``--case``), ``relay_messages`` each."""
    return [AcceptCase(c.name, c.size, c.sessions, plan.relay_messages, c.reuse) for c in plan.cases]


def relay(kind: Kind, plan: Plan, case: AcceptCase) -> Throughput:
    """End-to-end relay: messages per second from the first message in until the sink counted the
    last, and the server's CPU per message (reception, queue and delivery) over the same time."""
    counted, elapsed, cpu = _relay_run(kind, plan, case, plan.timeout_s)
    if counted < case.messages:
        raise RuntimeError(f"sink counted {counted} of {case.messages}")
    return Throughput(case.messages / elapsed, cpu * 1000 / case.messages)


@dataclass(frozen=True)
class ConnectFigures:
    sessions_per_s: float
    server_cpu_ms: float
    """Server CPU (its whole process tree) per session."""
    client_cpu_ms: float
    """Client CPU (all its processes) per session."""
    client_cores: float
    """Client CPU / wall time: near the number of cores left to it, the client is the limit."""

    def __str__(self) -> str:
        return (
            f"{self.sessions_per_s:,.0f} sessions/s, server CPU {self.server_cpu_ms:.3f} ms/session, "
            f"client CPU {self.client_cpu_ms:.3f} ms/session ({self.client_cores:.2f} cores)"
        )


def connect(kind: Kind, plan: Plan) -> ConnectFigures:
    """Connections per second with an empty session (connect, greeting, EHLO, QUIT, 221, close), and
    the server's and the client's CPU per session over the same interval."""
    port = plan.ports.take()
    with (
        kind.launch(plan.root(kind), port, None) as pid,
        EmptySessions(
            port,
            sessions=plan.connect_sessions,
            loops=plan.connect_loops,
            concurrency=plan.connect_concurrency,
            timeout_s=plan.timeout_s,
        ) as clients,
    ):
        before = tree_cpu_s(pid)
        result = clients.run()
        server_cpu_s = tree_cpu_s(pid) - before
    n = result.sessions
    return ConnectFigures(
        n / result.elapsed_s,
        server_cpu_s / n * 1000.0,
        result.client_cpu_s / n * 1000.0,
        result.client_cpu_s / result.elapsed_s,
    )


@dataclass(frozen=True)
class IdleFigures:
    opened: int
    rss_kib_per_conn: float
    pss_kib_per_conn: float
    greeting_p50_ms: float
    greeting_p99_ms: float
    probes_failed: int

    def __str__(self) -> str:
        return (
            f"{self.opened:,} open, {self.rss_kib_per_conn:.1f} KiB RSS / {self.pss_kib_per_conn:.1f} KiB PSS"
            f" per connection, greeting p50 {self.greeting_p50_ms:.2f} ms, p99 {self.greeting_p99_ms:.2f} ms"
            f" ({self.probes_failed} probes failed)"
        )


async def _idle(port: int, pid: int, count: int, probes: int) -> IdleFigures:
    await asyncio.sleep(0.5)
    before = tree_memory(pid)
    opened, measured = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(hold_idle_sessions(port, count, probes, opened, measured))
    waiter = asyncio.create_task(opened.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED, timeout=900)
    waiter.cancel()
    if task.done():
        await task  # it ended before the sessions were open: raise its error
        raise RuntimeError("idle sessions ended before they were open")
    await asyncio.sleep(1.0)
    after = tree_memory(pid)  # before the probes: reading /proc blocks this loop
    measured.set()
    result = await task
    n = max(1, result.opened)
    q = statistics.quantiles(result.greeting_ms, n=100, method="inclusive")
    return IdleFigures(
        result.opened,
        (after.rss_kib - before.rss_kib) / n,
        (after.pss_kib - before.pss_kib) / n,
        q[49],
        q[98],
        result.probes_failed,
    )


def idle(kind: Kind, plan: Plan) -> IdleFigures:
    """Many connections: memory per idle session, and new clients' time to greeting meanwhile."""
    port = plan.ports.take()
    count = min(plan.idle_sessions, kind.max_idle or plan.idle_sessions)
    with kind.launch(plan.root(kind), port, None) as pid:
        return asyncio.run(_idle(port, pid, count, plan.idle_probes))


def latency(kind: Kind, plan: Plan) -> tuple[float, float]:
    """Per-transaction latency (MAIL … final 250) at a fixed rate: (p50, p99) in ms."""
    port = plan.ports.take()
    with kind.launch(plan.root(kind), port, None):
        ms = asyncio.run(
            latency_at_rate(
                port, rate=plan.latency_rate, count=plan.latency_count, size=1024, rcpt=RCPT, pool=10
            )
        )
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[98]


def fsync_rate(workdir: Path, seconds: float = 2.0, max_ops: int = 100_000) -> float:
    """The disk's limit: appending 4 KiB + fsync in a loop on the queues' filesystem, per second."""
    path = workdir / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    block, n = b"\0" * 4096, 0
    start = time.perf_counter()
    try:
        while n < max_ops and time.perf_counter() - start < seconds:
            os.write(fd, block)
            os.fsync(fd)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / (time.perf_counter() - start)
