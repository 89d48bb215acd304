"""The servers under test, each behind one shape: ``kind.launch(root, port, relay_port)`` is a context
manager that starts a fresh instance under ``root`` on 127.0.0.1:``port`` and yields the pid whose
process tree holds its memory. Every measurement gets a fresh instance and a fresh directory.

``relay_port`` set means "relay every message to 127.0.0.1:relay_port" (the end-to-end scenario).
Postier reads it as ``[relay] smarthost``; until its outbound delivery exists, the relay probe in
``scenarios`` finds that nothing arrives and the scenario reports "not available" for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.postfix import ACCEPT_DOMAIN, postfix_instance
from bench.procs import stop_process, wait_greeting

__all__ = ["ACCEPT_DOMAIN", "RELAY_DOMAIN", "Kind", "Sink", "kinds", "start_sink"]

REPO = Path(__file__).resolve().parent.parent
RELAY_DOMAIN = "relay.test"
_MESG = re.compile(rb"mesg=(\d+)\r")

Launch = Callable[[Path, int, "int | None"], AbstractContextManager[int]]


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    launch: Launch
    is_postier: bool = False
    durable: bool = True


def _postier_toml(root: Path, port: int, relay_port: int | None, batch_max: int | None) -> str:
    lines = [
        "[server]",
        'hostname = "postier.bench.test"',
        f'data_dir = "{root / "data"}"',
        "max_connections = 5000",
        "max_connections_per_ip = 5000",
        "shutdown_grace_s = 1.0",
        "[[listener]]",
        f'address = "127.0.0.1:{port}"',
        'mode = "smtp"',
        "[relay]",
        f'local_domains = ["{ACCEPT_DOMAIN}"]',
        'trusted_networks = ["127.0.0.0/8"]',
    ]
    if relay_port is not None:
        lines.append(f'smarthost = "127.0.0.1:{relay_port}"')
    if batch_max is not None:
        lines += ["[queue]", f"commit_batch_max = {batch_max}"]
    # Unknown local recipients are refused at RCPT: the benchmark's user@ goes to the postmaster mailbox.
    lines += ["[local]", f'catch_all = {{ "{ACCEPT_DOMAIN}" = "postmaster@{ACCEPT_DOMAIN}" }}']
    lines += ["[log]", 'level = "warning"']
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _child(root: Path, port: int, argv: list[str]) -> Iterator[int]:
    """Run ``argv`` as a server in its own session; stderr goes to root/server.log."""
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_greeting(port, proc=proc)
        yield proc.pid
    finally:
        stop_process(proc)
        log.close()


def _postier(batch_max: int | None, loop: str) -> Launch:
    @contextlib.contextmanager
    def launch(root: Path, port: int, relay_port: int | None) -> Iterator[int]:
        root.mkdir(parents=True)
        try:
            config = root / "postier.toml"
            config.write_text(_postier_toml(root, port, relay_port, batch_max))
            module = ["postier", "serve"] if loop == "default" else ["bench.postier_asyncio"]
            argv = [sys.executable, "-m", *module, "--config", str(config)]
            with _child(root, port, argv) as pid:
                yield pid
        finally:
            shutil.rmtree(root, ignore_errors=True)

    return launch


@contextlib.contextmanager
def _aiosmtpd(root: Path, port: int, relay_port: int | None) -> Iterator[int]:
    root.mkdir(parents=True)
    try:
        argv = [
            sys.executable,
            "-m",
            "bench.aiosmtpd_fsync",
            "--port",
            str(port),
            "--dir",
            str(root / "mail"),
        ]
        if relay_port is not None:
            argv += ["--relay-port", str(relay_port)]
        with _child(root, port, argv) as pid:
            yield pid
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _sink_only(root: Path, port: int, relay_port: int | None) -> Iterator[int]:
    with start_sink(port) as sink:
        yield sink.pid


def kinds(postier_loop: str = "default") -> list[Kind]:
    """Every server, in the order of one round (A B C …). ``postier_loop``: "default" runs
    ``postier serve`` as users do (uvloop when installed); "asyncio" forces the stdlib loop."""
    return [
        Kind("postier", "Postier", _postier(None, postier_loop), is_postier=True),
        Kind("postfix", "Postfix", postfix_instance),
        Kind("aiosmtpd", "aiosmtpd+fsync", _aiosmtpd),
        Kind("postier1", "Postier, 1 fsync/msg", _postier(1, postier_loop), is_postier=True),
        Kind("sink", "smtp-sink (no durability)", _sink_only, durable=False),
    ]


class Sink:
    """A running ``smtp-sink -c``; ``count`` follows its running message counter."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.count = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # smtp-sink -c writes "sess=N quit=N mesg=N\r" after every message and session end.
        assert self.proc.stdout is not None
        tail = b""
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            tail = (tail + chunk)[-200:]
            found = _MESG.findall(tail)
            if found:
                self.count = int(found[-1])


@contextlib.contextmanager
def start_sink(port: int) -> Iterator[Sink]:
    """smtp-sink on 127.0.0.1:port, dropping privileges to ``nobody`` (required when run as root)."""
    argv = ["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{port}", "4096"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_greeting(port, proc=proc)
        yield Sink(proc)
    finally:
        stop_process(proc)
