"""Postfix ``smtp-sink`` as a test peer (see ``peers.py`` for the whole picture).

``smtp_sink`` (fixture, a factory) runs ``smtp-sink -u root -v -c -d DUMP/%M. 127.0.0.N:25 64`` with
the chosen ``SinkOptions``, and a ``SmtpSink`` reads back what it saw: the transactions it accepted
(``messages``, from the dump files), the connections it accepted and the commands it read (from the
``-v`` log). Its dump files are written after it drops privileges, so its directory is made with
``tempfile.mkdtemp`` rather than under ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.loopback import is_free, loopback_address

__all__ = ["SinkMessage", "SinkOptions", "SmtpSink", "smtp_sink"]


# --- smtp-sink -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkOptions:
    """smtp-sink switches. Command names: CONNECT, HELO, EHLO, LHLO, MAIL, RCPT, DATA, ".", RSET …"""

    reject_soft: Sequence[str] = ()  # -r: answer 4xx (CONNECT: a 4xx greeting)
    reject_hard: Sequence[str] = ()  # -f: answer 5xx
    disconnect_421: Sequence[str] = ()  # -Q: 421 and hang up
    hang_up: Sequence[str] = ()  # -q: hang up without a reply
    pipelining: bool = True  # -p when False
    dsn: bool = True  # -N when False
    eight_bit: bool = True  # -8 when False
    esmtp: bool = True  # -e when False
    lmtp: bool = False  # -L
    hostname: str = "sink.test"  # -h
    extra: Sequence[str] = ()

    def args(self) -> list[str]:
        out = ["-h", self.hostname]
        for flag, commands in (
            ("-r", self.reject_soft),
            ("-f", self.reject_hard),
            ("-Q", self.disconnect_421),
            ("-q", self.hang_up),
        ):
            if commands:
                out += [flag, ",".join(commands)]
        for flag, on in (
            ("-p", self.pipelining),
            ("-N", self.dsn),
            ("-8", self.eight_bit),
            ("-e", self.esmtp),
        ):
            if not on:
                out.append(flag)
        if self.lmtp:
            out.append("-L")
        return out + list(self.extra)


@dataclass(frozen=True)
class SinkMessage:
    helo: str | None
    mail_args: str
    rcpt_args: tuple[str, ...]
    body: bytes

    @property
    def sender(self) -> str:
        return self.mail_args.split(" ", 1)[0].strip("<>")

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(r.split(" ", 1)[0].strip("<>") for r in self.rcpt_args)


_SINK_HEADER = re.compile(rb"^(X-[A-Za-z-]+): (.*)$")


def _parse_dump(raw: bytes) -> SinkMessage:
    """One ``-d`` file: X-* lines, a 3-line Received header, the message, a blank line (LF endings)."""
    lines = raw.split(b"\n")
    fields: list[tuple[str, str]] = []
    i = 0
    while i < len(lines) and (m := _SINK_HEADER.match(lines[i])):
        fields.append((m.group(1).decode(), m.group(2).decode("utf-8", "replace")))
        i += 1
    i += 3  # Received: from …, by …, date
    body = b"\n".join(lines[i:])
    body = body[:-1] if body.endswith(b"\n\n") else body  # smtp-sink's trailing empty line
    get = dict(fields)
    return SinkMessage(
        helo=get.get("X-Helo-Args"),
        mail_args=get.get("X-Mail-Args", ""),
        rcpt_args=tuple(v for k, v in fields if k == "X-Rcpt-Args"),
        body=body.replace(b"\n", b"\r\n"),
    )


class SmtpSink:
    """One running smtp-sink (see the module docstring)."""

    def __init__(self, workdir: Path, options: SinkOptions, address: str, port: int) -> None:
        self.address, self.port, self.options = address, port, options
        self.dump_dir = workdir / "dump"
        self.dump_dir.mkdir(parents=True)
        self.log_path = workdir / "sink.log"
        self.counters_path = workdir / "counters"
        with self.log_path.open("wb") as log, self.counters_path.open("wb") as counters:
            argv = ["smtp-sink", "-u", "root", "-v", "-c", "-d", f"{self.dump_dir}/%M.", *options.args()]
            self.proc = subprocess.Popen(
                [*argv, f"{address}:{port}", "64"],
                stdout=counters,
                stderr=log,
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine starts processes slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink exited: {self.log_path.read_text(errors='replace')}")
            if not is_free(self.address, self.port):
                return
            time.sleep(0.025)
        raise RuntimeError("smtp-sink did not start listening")

    def messages(self) -> list[SinkMessage]:
        """The finished transactions. smtp-sink creates a dump file at MAIL FROM, writes it through a
        buffer as the transaction goes on and closes it at the final "." (before its 250), or deletes
        it on RSET: a file it still holds open is a transaction in progress, not a message. Listed
        before the open files are looked at, so a file found closed is whole; oldest first."""
        files = list(self.dump_dir.iterdir())
        in_progress = self._open_files()
        done = [p for p in files if str(p.resolve()) not in in_progress]
        return [_parse_dump(p.read_bytes()) for p in sorted(done, key=lambda p: p.stat().st_mtime_ns)]

    def _open_files(self) -> set[str]:
        """The paths smtp-sink (one process) has open now, from /proc/PID/fd."""
        found: set[str] = set()
        try:
            fds = list(Path(f"/proc/{self.proc.pid}/fd").iterdir())
        except FileNotFoundError:  # it has exited: nothing is open
            return found
        for fd in fds:
            try:
                found.add(os.readlink(fd))
            except FileNotFoundError:  # closed meanwhile
                continue
        return found

    async def wait_messages(self, count: int, timeout_s: float = 60.0) -> list[SinkMessage]:
        async with asyncio.timeout(timeout_s):
            while len(found := self.messages()) < count:
                await asyncio.sleep(0.02)
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connections(self) -> int:
        return sum(1 for line in self.log().splitlines() if line.startswith("smtp-sink: connect ("))

    def commands(self) -> list[str]:
        """Command lines read, in order (from the -v log: ``smtp-sink: MAIL FROM:<…>``)."""
        verbs = (
            "HELO",
            "EHLO",
            "LHLO",
            "MAIL",
            "RCPT",
            "DATA",
            ".",
            "RSET",
            "NOOP",
            "QUIT",
            "AUTH",
            "STARTTLS",
        )
        out = []
        for line in self.log().splitlines():
            text = line.removeprefix("smtp-sink: ")
            if text.split(" ", 1)[0].upper() in verbs:
                out.append(text)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., SmtpSink]]:
    """Factory: ``smtp_sink(port=25, address=None, **SinkOptions fields)`` → a running ``SmtpSink``
    (``address``: reuse one, e.g. to restart a peer on the address a test already uses)."""
    sinks: list[SmtpSink] = []
    # Not tmp_path: smtp-sink's dump files must be writable after it drops privileges (-u root keeps them).
    workroot = Path(tempfile.mkdtemp(prefix="postier-sink-"))

    def start(port: int = 25, address: str | None = None, **options: Any) -> SmtpSink:
        address = address or loopback_address(port)
        sink = SmtpSink(workroot / str(len(sinks)), SinkOptions(**options), address, port)
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()
    shutil.rmtree(workroot, ignore_errors=True)
