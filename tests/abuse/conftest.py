"""The abuse suite (issue 14): attacks played against a real ``postier serve`` process.

Each test measures what the attack costs the server — resident memory (``/proc/PID/status``
VmRSS), open file descriptors (``/proc/PID/fd``) — and checks that a well-behaved client is still
served meanwhile. One server per module (starting one costs about a second): tests in a module share
it, so each leaves it as it found it (no session left open).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import PostierProcess, add_users, make_config

__all__ = [
    "AbuseServer",
    "Sampler",
    "good_client",
    "open_fds",
    "raw_session",
    "rss_kib",
    "start_abuse_server",
]

GOOD_MESSAGE = b"From: <good@example.org>\r\nSubject: hello\r\n\r\nA well-behaved message.\r\n"


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid``, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class AbuseServer:
    def __init__(self, proc: PostierProcess) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    @property
    def port(self) -> int:
        return self.proc.ports["smtp"]

    def port_of(self, mode: str) -> int:
        return self.proc.ports[mode]

    @property
    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    @property
    def fds(self) -> int:
        return open_fds(self.pid)

    def log(self) -> str:
        return self.proc.log()

    def wait_delivered(self, timeout_s: float = 120.0) -> None:
        """Wait until every queued message is delivered (delivery reads a body whole: measures of
        receiving must not see it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log = self.log()
            if log.count("event=queued") <= log.count("result=delivered"):
                return
            time.sleep(0.1)
        raise AssertionError("messages still undelivered")

    def settle(self, *, fds_at_most: int, timeout_s: float = 20.0) -> int:
        """Wait until the server has at most ``fds_at_most`` descriptors open (sessions closing take a
        moment); returns the count."""
        deadline = time.monotonic() + timeout_s
        while (count := self.fds) > fds_at_most and time.monotonic() < deadline:
            time.sleep(0.1)
        return count


def start_abuse_server(tmp_path: Path, **sections: dict[str, Any]) -> Iterator[AbuseServer]:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    add_users(data_dir, "erin@example.test")
    defaults: dict[str, dict[str, Any]] = {
        # Delivery out of the way: the suite measures what receiving costs.
        "delivery": {"max_connections": 1, "max_connections_per_destination": 1},
    }
    proc = PostierProcess(tmp_path, make_config(data_dir, **{**defaults, **sections}))
    proc.start()
    try:
        yield AbuseServer(proc)
    finally:
        proc.stop()


def good_client(port: int, *, timeout_s: float = 20.0, source: str = "127.0.0.1") -> float:
    """Send one small message like a well-behaved client; the seconds it took (asserts the 250)."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout_s, source_address=(source, 0)) as client:
        client.ehlo("good.example.org")
        code, text = client.mail("good@example.org")
        assert code == 250, text
        code, text = client.rcpt("erin@example.test")
        assert code == 250, text
        code, text = client.data(GOOD_MESSAGE)
        assert code == 250, text
    return time.monotonic() - started


@contextlib.contextmanager
def raw_session(port: int, *, source: str = "127.0.0.1", timeout_s: float = 60.0) -> Iterator[socket.socket]:
    """A plain socket past the greeting and EHLO (its reply read)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0))
    try:
        expect(sock, b"220")
        sock.sendall(b"EHLO abuser.example.net\r\n")
        expect(sock, b"250 ")
        yield sock
    finally:
        sock.close()


def expect(sock: socket.socket, marker: bytes) -> bytes:
    """Read until ``marker`` starts a line; the text read."""
    data = b""
    while not (data.startswith(marker) or b"\r\n" + marker in data) or not data.endswith(b"\r\n"):
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"closed before {marker!r}: {data[-300:]!r}")
        data += piece
    return data


def read_replies(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` single-line replies (or until the server closes); the lines."""
    data = b""
    while data.count(b"\r\n") < count:
        piece = sock.recv(1 << 20)
        if not piece:
            break
        data += piece
    return data.split(b"\r\n")[:-1]


class Sampler:
    """Samples a figure (RSS, say) every ``interval_s`` in a thread; ``peak`` once stopped."""

    def __init__(self, measure: Callable[[], int], interval_s: float = 0.05) -> None:
        self._measure = measure
        self._interval = interval_s
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append(self._measure())
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
