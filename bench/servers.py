"""The servers under test, each behind one shape: ``kind.launch(root, port, relay_port)`` is a context
manager that starts a fresh instance under ``root`` on 127.0.0.1:``port`` and yields the pid whose
process tree holds its memory. Every measurement gets a fresh instance and a fresh directory.

``relay_port`` set means "relay every message to 127.0.0.1:relay_port" (the end-to-end scenario):
Postier routes every non-local domain there (``[[route]] domains = ["*"]``, no TLS), Postfix uses
``relayhost``, aiosmtpd forwards with aiosmtplib. Unset, every server keeps what it accepts and
delivers nothing while it runs: Postfix puts it on hold, aiosmtpd only stores it, and Postier routes
it to a port that never greets (``held_port``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.dkim_keys import dkim_dns
from bench.postfix import ACCEPT_DOMAIN, IDLE_HEADROOM, SMTPD_MAXPROC, postfix_instance
from bench.procs import stop_process, wait_greeting

__all__ = ["ACCEPT_DOMAIN", "RELAY_DOMAIN", "Kind", "Sink", "held_port", "kinds", "start_sink"]

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
    max_idle: int | None = None
    """Most idle sessions the idle scenario opens on this server (None: as many as the plan says)."""


MAX_CONNECTIONS = 12_000
"""Postier's max_connections (and per IP: every client is 127.0.0.1): the idle scenario holds 10,000
sessions and times new clients meanwhile."""

WORKERS = min(os.cpu_count() or 1, 32)
"""``[server] workers`` of the "postierw" reference server: one process per core (Postfix runs one
smtpd process per connection, on every core). "postier" itself runs as shipped: one process."""


def _postier_toml(
    root: Path,
    port: int,
    route_port: int,
    *,
    hold: bool,
    batch_max: int | None,
    workers: int,
    dns: str | None = None,
) -> str:
    """Every non-local domain (``bench.test``, ``relay.test``) is routed to 127.0.0.1:``route_port``:
    the sink in the relay scenario, else a port that never greets (``held_port``). Held, the
    scheduler opens one connection, takes at most 100 recipients (1 per transaction) and waits on
    the greeting for the whole run: accepted mail stays queued and nothing else runs, as Postfix's
    HOLD does in the same scenarios."""
    lines = [
        "[server]",
        'hostname = "postier.bench.test"',
        f'data_dir = "{root / "data"}"',
        f"max_connections = {MAX_CONNECTIONS}",
        f"max_connections_per_ip = {MAX_CONNECTIONS}",
        "shutdown_grace_s = 1.0",
        f"workers = {workers}",
        "[[listener]]",
        f'address = "127.0.0.1:{port}"',
        'mode = "smtp"',
        "[relay]",
        'local_domains = ["postier.bench.test"]',
        'trusted_networks = ["127.0.0.0/8"]',
        "[[route]]",
        'domains = ["*"]',
        f'host = "127.0.0.1:{route_port}"',
        'tls = "none"',
    ]
    if hold:
        lines += [
            "[delivery]",
            "max_connections = 1",
            "max_connections_per_destination = 1",
            "max_recipients_per_transaction = 1",
        ]
    if batch_max is not None:
        lines += ["[queue]", f"commit_batch_max = {batch_max}"]
    if dns is not None:  # the DKIM keys' records (bench/dkim_keys.py)
        lines += ["[dns]", f'nameservers = ["{dns}"]']
    lines += ["[log]", 'level = "warning"']
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port that takes connections (the kernel completes the handshake) but never
    answers: a client waits there for a greeting until its own timeout (5 minutes for Postier)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


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


def _postier(batch_max: int | None, loop: str, workers: int = 1, *, dkim: tuple[str, ...] = ()) -> Launch:
    """``loop`` "asyncio" (``bench.postier_asyncio``) always runs one process, whatever ``workers``.
    ``dkim``: every message is DKIM-signed with a key of each of these algorithms (``bench/dkim_keys.py``)."""

    @contextlib.contextmanager
    def launch(root: Path, port: int, relay_port: int | None) -> Iterator[int]:
        root.mkdir(parents=True)
        try:
            with contextlib.ExitStack() as stack:
                route_port = relay_port if relay_port is not None else stack.enter_context(held_port())
                config = root / "postier.toml"
                dns = stack.enter_context(dkim_dns(root / "data", dkim)) if dkim else None
                toml = _postier_toml(
                    root,
                    port,
                    route_port,
                    hold=relay_port is None,
                    batch_max=batch_max,
                    workers=workers,
                    dns=dns,
                )
                config.write_text(toml)
                module = (
                    ["postier", "serve", "--allow-root"] if loop == "default" else ["bench.postier_asyncio"]
                )
                argv = [sys.executable, "-m", *module, "--config", str(config)]
                pid = stack.enter_context(_child(root, port, argv))
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
        Kind("postfix", "Postfix", postfix_instance, max_idle=SMTPD_MAXPROC - IDLE_HEADROOM),
        Kind("aiosmtpd", "aiosmtpd+fsync", _aiosmtpd),
        Kind("postier1", "Postier, 1 fsync/msg", _postier(1, postier_loop), is_postier=True),
        Kind(
            "postierw", f"Postier, {WORKERS} workers", _postier(None, postier_loop, WORKERS), is_postier=True
        ),
        Kind(
            "postierdkim",
            "Postier, DKIM Ed25519",
            _postier(None, postier_loop, dkim=("ed25519",)),
            is_postier=True,
        ),
        Kind(
            "postierdkim2",
            "Postier, DKIM Ed25519 + RSA",
            _postier(None, postier_loop, dkim=("ed25519", "rsa")),
            is_postier=True,
        ),
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
    """smtp-sink on 127.0.0.1:port, dropping privileges to ``nobody`` (required when run as root),
    taking as many connections at once as Postier may (-m; its default, 256, would leave the idle
    scenario's sessions waiting in the listen queue)."""
    argv = ["smtp-sink", "-c", "-m", str(MAX_CONNECTIONS), "-u", "nobody", f"127.0.0.1:{port}", "4096"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_greeting(port, proc=proc)
        yield Sink(proc)
    finally:
        stop_process(proc)
