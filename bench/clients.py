"""The load generators: Postfix's ``smtp-source`` for throughput, and two small asyncio clients for
the many-idle-connections and the fixed-rate latency scenarios. All bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from dataclasses import dataclass

__all__ = ["IdleResult", "hold_idle_sessions", "latency_at_rate", "smtp_source"]

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


@dataclass(frozen=True)
class IdleResult:
    opened: int
    greeting_ms: list[float]


async def _greeting_time(port: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        await _expect(reader, b"220")
        return (time.perf_counter() - start) * 1000.0
    finally:
        writer.close()


async def hold_idle_sessions(
    port: int, count: int, on_open: asyncio.Event, release: asyncio.Event
) -> IdleResult:
    """Open ``count`` sessions (greeting + EHLO, then idle), set ``on_open``, time a few new clients'
    greetings while they stay open, and keep them until ``release`` is set."""
    sessions: list[asyncio.StreamWriter] = []
    try:
        for start in range(0, count, 100):
            batch = [_open_session(port) for _ in range(start, min(count, start + 100))]
            results = await asyncio.wait_for(asyncio.gather(*batch, return_exceptions=True), 120)
            sessions += [w for r in results if not isinstance(r, BaseException) for w in (r[1],)]
        on_open.set()
        probes = []
        for _ in range(5):
            probes.append(await asyncio.wait_for(_greeting_time(port), 30))
            await asyncio.sleep(0.1)
        await asyncio.wait_for(release.wait(), 300)
        return IdleResult(len(sessions), probes)
    finally:
        for w in sessions:
            w.close()
        for w in sessions:
            with contextlib.suppress(OSError, ConnectionError):
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
