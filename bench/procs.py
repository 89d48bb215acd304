"""Process plumbing shared by every server: loopback ports, readiness, bounded stop, memory, CPU.

Every child is started in its own session so that it (and only it) can be stopped by its id; every
wait is bounded in time so that a wedged server fails one measurement instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Memory",
    "PortPool",
    "stop_process",
    "tree_cpu_s",
    "tree_memory",
    "wait_greeting",
    "wait_pid_gone",
]

LOOPBACK = "127.0.0.1"


class PortPool:
    """High loopback ports below the kernel's ephemeral range, so that thousands of client sockets
    never take a port a server is about to bind."""

    def __init__(self, base: int) -> None:
        self._next = base

    def take(self) -> int:
        for _ in range(2000):
            port, self._next = self._next, self._next + 1
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
        raise RuntimeError("no free loopback port found")


def wait_greeting(port: int, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until a server on ``port`` sends its 220 greeting (RFC 5321 §4.3.1), then QUIT."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before greeting")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=2.0) as s:
                line = s.makefile("rb").readline()
                if line.startswith(b"220"):
                    with contextlib.suppress(OSError):
                        s.sendall(b"QUIT\r\n")
                    return
                last = RuntimeError(f"unexpected greeting {line[:60]!r}")
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"no greeting on port {port} within {timeout_s:.0f} s: {last}")


def wait_pid_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after ``timeout_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5.0)


@dataclass(frozen=True)
class Memory:
    """Resident memory of a process tree in KiB: RSS counts shared pages once per process (so it
    overstates forking servers), PSS divides them among the sharers."""

    rss_kib: int
    pss_kib: int
    processes: int


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            out.extend(int(c) for c in text.split())
    return out


def _walk(root: int) -> Iterator[int]:
    todo, seen = [root], set[int]()
    while todo and len(seen) < 100_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        yield pid
        todo.extend(_children(pid))


def _field_kib(path: Path, name: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def tree_memory(root: int) -> Memory:
    """VmRSS (from /proc/PID/status) and Pss (from smaps_rollup) summed over ``root`` and descendants."""
    rss = pss = n = 0
    for pid in _walk(root):
        rss += _field_kib(Path(f"/proc/{pid}/status"), "VmRSS")
        pss += _field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        n += 1
    return Memory(rss, pss, n)


_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root``, its live descendants, and every descendant
    that has exited and been waited for (``cutime``/``cstime``: Postfix's master reaps its smtpd
    processes, so their CPU is counted after they exit). Differences of two calls give the CPU of a run."""
    ticks = 0
    for pid in _walk(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / _TICKS
