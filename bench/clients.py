"""The load generators: Postfix's ``smtp-source`` for throughput, and small asyncio clients for
empty sessions (connections per second), many idle connections and fixed-rate latency. All bounded
in count and time.

The empty-session client runs in ``loops`` child processes (``python -m bench.clients``), each an
event loop (uvloop when installed) driving ``concurrency`` sessions at a time as raw protocol
callbacks, so that the client costs as little as it can; each child reports its own CPU time, so the
report shows when the client, not the server, is the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

__all__ = [
    "EmptySessions",
    "EmptySessionsResult",
    "IdleResult",
    "hold_idle_sessions",
    "latency_at_rate",
    "smtp_source",
]

LOOPBACK = "127.0.0.1"
SENDER = "bench@client.test"


def smtp_source(
    port: int, *, sessions: int, messages: int, size: int, rcpt: str, timeout_s: float, reuse: bool = True
) -> float:
    """Send ``messages`` messages of ``size`` payload bytes over ``sessions`` parallel sessions: each
    session reusing its connection (``reuse``, smtp-source -d: what a submission client or a relay in
    front of us sends), or one message per connection (what an MX on the internet mostly sees).
    Returns the wall time in seconds; raises on any refusal."""
    argv = [
        "smtp-source",
        *(["-d"] if reuse else []),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(size),
    ]
    argv += ["-M", "client.test", "-f", SENDER, "-t", rcpt, f"{LOOPBACK}:{port}"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return elapsed


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One SMTP reply, possibly multi-line (RFC 5321 §4.2.1: "250-" continues, "250 " ends)."""
    for _ in range(100):
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line
    raise ConnectionError("reply too long")


async def _expect(reader: asyncio.StreamReader, code: bytes) -> None:
    line = await _reply(reader)
    if not line.startswith(code):
        raise ConnectionError(f"expected {code.decode()}, got {line[:80]!r}")


async def _open_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        await _expect(reader, b"220")
        writer.write(b"EHLO client.test\r\n")
        await _expect(reader, b"250")
    except BaseException:
        writer.close()
        raise
    return reader, writer


_STEPS = ((b"220", b"EHLO client.test\r\n"), (b"250", b"QUIT\r\n"), (b"221", b""))
"""An empty session: each expected reply, and what to send once it has come."""


class _EmptySession(asyncio.Protocol):
    """One empty session as raw protocol callbacks (no streams, no smtplib): greeting, EHLO, QUIT, 221,
    then the server's close. The server closes first, so TIME_WAIT stays on its side and the client's
    ephemeral ports are never short. ``done`` gets None on success, else what went wrong."""

    def __init__(self, done: asyncio.Future[str | None]) -> None:
        self._done = done
        self._buf = b""
        self._step = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (end := self._buf.find(b"\n")) >= 0:
            line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
            if line[3:4] != b"-":  # RFC 5321 §4.2.1: "250-" continues a reply, "250 " ends it
                self._reply(line)

    def _reply(self, line: bytes) -> None:
        if self._step >= len(_STEPS) or not line.startswith(_STEPS[self._step][0]):
            self._finish(f"step {self._step}: unexpected reply {line[:80]!r}")
            return
        send = _STEPS[self._step][1]
        self._step += 1
        if send and self._transport is not None:
            self._transport.write(send)

    def _finish(self, why: str | None) -> None:
        if not self._done.done():
            self._done.set_result(why)
        if why is not None and self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        complete = self._step == len(_STEPS)
        self._finish(None if complete else f"closed after {self._step} of {len(_STEPS)} replies ({exc})")


async def _empty_sessions(port: int, sessions: int, concurrency: int) -> tuple[int, int, str]:
    """``sessions`` empty sessions, ``concurrency`` at a time: (completed, failed, first failure)."""
    loop = asyncio.get_running_loop()
    left, completed, failed, first = sessions, 0, 0, ""

    async def lane() -> None:
        nonlocal left, completed, failed, first
        while left > 0:
            left -= 1
            done: asyncio.Future[str | None] = loop.create_future()
            try:
                await loop.create_connection(functools.partial(_EmptySession, done), LOOPBACK, port)
                why = await done
            except OSError as exc:
                why = f"connect: {exc}"
            if why is None:
                completed += 1
            else:
                failed += 1
                first = first or why

    await asyncio.gather(*(lane() for _ in range(min(concurrency, sessions))))
    return completed, failed, first


def _empty_sessions_child(argv: list[str]) -> None:
    """``python -m bench.clients PORT SESSIONS CONCURRENCY TIMEOUT_S``: says "ready", waits for a line
    on stdin, runs, and prints one JSON line (its counts, its monotonic start and end, its CPU time)."""
    port, sessions, concurrency, timeout_s = int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    name = "asyncio"
    with contextlib.suppress(ImportError):
        import uvloop

        factory, name = uvloop.new_event_loop, "uvloop"
    with asyncio.Runner(loop_factory=factory) as runner:
        print("ready", flush=True)
        sys.stdin.readline()
        cpu, start = time.process_time(), time.monotonic()
        completed, failed, first = runner.run(
            asyncio.wait_for(_empty_sessions(port, sessions, concurrency), timeout_s)
        )
        end, cpu = time.monotonic(), time.process_time() - cpu
    out = {"completed": completed, "failed": failed, "first": first, "start": start, "end": end}
    print(json.dumps({**out, "cpu_s": cpu, "loop": name}), flush=True)


@dataclass(frozen=True)
class EmptySessionsResult:
    sessions: int
    elapsed_s: float
    """From the first child's start to the last child's end (one monotonic clock for all)."""
    client_cpu_s: float
    """CPU time of all client processes during the run (user + system)."""
    loop: str


class EmptySessions:
    """``loops`` client processes, ``sessions`` empty sessions in all (connect, greeting, EHLO, QUIT,
    221, close), ``concurrency`` at a time in each process. Entering starts the processes and waits
    until they are ready (interpreter and event loop started), so that ``run()`` times sessions only.
    """

    def __init__(self, port: int, *, sessions: int, loops: int, concurrency: int, timeout_s: float) -> None:
        self._argv = [sys.executable, "-m", "bench.clients", str(port)]
        self._shares = [sessions // loops + (1 if i < sessions % loops else 0) for i in range(loops)]
        self._concurrency, self._timeout_s = concurrency, timeout_s
        self._procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> EmptySessions:
        for share in self._shares:
            argv = [*self._argv, str(share), str(self._concurrency), str(self._timeout_s)]
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            self._procs.append(proc)
        for proc in self._procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"client did not start: {self._stderr(proc)}")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def run(self) -> EmptySessionsResult:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in self._procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"client failed: {self._stderr(proc)}")
            reports.append(json.loads(line))
        failed = sum(r["failed"] for r in reports)
        if failed:
            first = next(r["first"] for r in reports if r["failed"])
            raise RuntimeError(f"{failed} of {sum(self._shares)} empty sessions failed, first: {first}")
        return EmptySessionsResult(
            sum(r["completed"] for r in reports),
            max(r["end"] for r in reports) - min(r["start"] for r in reports),
            sum(r["cpu_s"] for r in reports),
            reports[0]["loop"],
        )

    def _stderr(self, proc: subprocess.Popen[str]) -> str:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
        return err.strip()[-300:]


@dataclass(frozen=True)
class IdleResult:
    opened: int
    greeting_ms: list[float]
    probes_failed: int


PROBE_TIMEOUT_S = 5.0
"""A probe not greeted within this counts as this long (and as failed)."""


async def _greeting_time(port: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        await _expect(reader, b"220")
        return (time.perf_counter() - start) * 1000.0
    finally:
        writer.close()


async def _probe(port: int) -> float | None:
    """A new client's time to greeting in ms, or None if it was not greeted."""
    try:
        return await asyncio.wait_for(_greeting_time(port), PROBE_TIMEOUT_S)
    except (OSError, ConnectionError, TimeoutError):
        return None


async def hold_idle_sessions(
    port: int, count: int, probes: int, on_open: asyncio.Event, measured: asyncio.Event
) -> IdleResult:
    """Open up to ``count`` sessions (greeting + EHLO, then idle; 100 at a time, and no more batches
    once one had a session fail: the server has reached its limit), set ``on_open``; once ``measured``
    is set, time ``probes`` new clients' greetings one after another, 10 ms apart, while the sessions
    stay open; then close them all."""
    sessions: list[asyncio.StreamWriter] = []
    try:
        for start in range(0, count, 100):
            batch = [asyncio.wait_for(_open_session(port), 60) for _ in range(start, min(count, start + 100))]
            results = await asyncio.gather(*batch, return_exceptions=True)
            sessions += [r[1] for r in results if not isinstance(r, BaseException)]
            if any(isinstance(r, BaseException) for r in results):
                break
        on_open.set()
        await asyncio.wait_for(measured.wait(), 300)
        times: list[float] = []
        failed = 0
        for _ in range(probes):
            got = await _probe(port)
            failed += got is None
            times.append(PROBE_TIMEOUT_S * 1000.0 if got is None else got)
            await asyncio.sleep(0.01)
        return IdleResult(len(sessions), times, failed)
    finally:
        for w in sessions:
            w.close()
        for w in sessions:
            with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                await asyncio.wait_for(w.wait_closed(), 5)


async def _transaction(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, rcpt: str
) -> None:
    writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
    await _expect(reader, b"250")
    writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
    await _expect(reader, b"250")
    writer.write(b"DATA\r\n")
    await _expect(reader, b"354")
    writer.write(body + b".\r\n")
    await _expect(reader, b"250")


def _body(size: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    head = b"From: <bench@client.test>\r\nSubject: latency\r\n\r\n"
    return head + line * max(1, size // len(line))


async def latency_at_rate(
    port: int, *, rate: float, count: int, size: int, rcpt: str, pool: int
) -> list[float]:
    """Start one transaction every 1/rate s on a pool of persistent sessions (open loop: latency is
    measured from the scheduled start, so a stalled server cannot hide its queueing). Returns ms."""
    body = _body(size)
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(pool):
        free.put_nowait(await asyncio.wait_for(_open_session(port), 30))
    loop = asyncio.get_running_loop()

    async def one(scheduled: float) -> float:
        reader, writer = await free.get()
        try:
            await _transaction(reader, writer, body, rcpt)
        finally:
            free.put_nowait((reader, writer))
        return (loop.time() - scheduled) * 1000.0

    start = loop.time() + 0.05
    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        tasks.append(asyncio.create_task(one(scheduled)))
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks), 60 + count / rate))
    finally:
        while not free.empty():
            free.get_nowait()[1].close()


if __name__ == "__main__":
    _empty_sessions_child(sys.argv[1:])
