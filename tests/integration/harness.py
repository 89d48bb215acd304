"""Run Postier for tests: in this process (fast, on the test's event loop) or as a child process
(``postier serve``, for crash and shutdown tests). Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import itertools
import os
import random
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postier.app import Application
from postier.config import Config, parse_config
from postier.users import UserStore, users_path
from tests.integration.loopback import is_free

__all__ = [
    "PostierProcess",
    "RunningServer",
    "add_users",
    "free_port",
    "make_config",
    "peer_certificate",
    "wait_for_port",
]


def _port_range() -> range:
    """Ports for test listeners: below the kernel's ephemeral range, which ``connect()`` and
    ``bind(port 0)`` draw from anywhere on the machine. A port from that range, found free and then
    released, can be taken as the local port of any outgoing connection (or by another ``bind(0)``)
    before the server binds it: the server then fails with EADDRINUSE, or a test talks to a stranger."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10000, max(low, 12000))


_PORTS = _port_range()
# Handed out in turn from a random point: never twice in one test run (so no TIME_WAIT or late
# listener of an earlier test is met), and two test runs on one machine start far apart.
_next_port = itertools.count(random.SystemRandom().randrange(len(_PORTS)))


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A TCP port nothing listens on at ``host`` (with ``udp``, free for UDP too), for a server the
    test is about to start (see ``_port_range``). Checked by binding with SO_REUSEADDR, as every
    server under test binds."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_next_port) % len(_PORTS)]
        if all(is_free(host, port, kind) for kind in kinds):
            return port
    raise RuntimeError(f"no free port on {host}")


def wait_for_port(
    port: int,
    timeout_s: float = 60.0,
    *,
    alive: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Wait until 127.0.0.1:port accepts a connection (generous: a loaded CI machine starts a Python
    process slowly). With ``alive``, a child that exits meanwhile fails at once, with its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        if alive is not None and alive.poll() is not None:
            text = log.read_text(errors="replace") if log is not None else ""
            raise RuntimeError(f"the server exited ({alive.returncode}) before listening:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def peer_certificate(port: int) -> bytes:
    """The DER certificate an implicit-TLS (submissions) listener on 127.0.0.1:port presents."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=10) as client:
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        cert = sock.getpeercert(binary_form=True)
        assert cert is not None
        return cert


def add_users(data_dir: Path, *addresses: str) -> None:
    """Create users in ``data_dir``'s user store: local recipients exist only when they are users
    (or aliases, a catch-all, postmaster). Cheap argon2 parameters: these are mailboxes, not logins
    under test (a login upgrades its hash). A running server notices the change on its next lookup."""
    store = UserStore(users_path(data_dir), time_cost=1, memory_cost=8192, parallelism=1)
    for address in addresses:
        store.add(address, "mailbox only")


def make_config(data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A test configuration: three listeners on free loopback ports, hostname mx.test, one process
    (``server.workers``: the default is one per core)."""
    data: dict[str, Any] = {
        "server": {"hostname": "mx.test", "data_dir": str(data_dir), "workers": 1},
        "listener": [
            {"address": f"127.0.0.1:{free_port()}", "mode": "smtp"},
            {"address": f"127.0.0.1:{free_port()}", "mode": "submission"},
            {"address": f"127.0.0.1:{free_port()}", "mode": "submissions"},
        ],
        "relay": {"local_domains": ["localhost", "example.test"]},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **values}
        else:
            data[name] = values
    return data


def _ports(config: Config) -> dict[str, int]:
    return {lc.mode: int(lc.address.rsplit(":", 1)[1]) for lc in config.listeners}


@dataclass
class RunningServer:
    app: Application
    config: Config

    @property
    def ports(self) -> dict[str, int]:
        return _ports(self.config)

    @property
    def smtp_port(self) -> int:
        return self.ports["smtp"]

    @property
    def data_dir(self) -> Path:
        return Path(self.config.server.data_dir)


class PostierProcess:
    """``python -m postier serve --config FILE`` as a child process, its log in ``log_path``."""

    def __init__(self, tmp_path: Path, data: dict[str, Any]) -> None:
        import tomli_w

        self.config = parse_config(data)
        self.config_path = tmp_path / "postier.toml"
        self.config_path.write_text(tomli_w.dumps(data))
        self.log_path = tmp_path / "postier.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ports(self) -> dict[str, int]:
        return _ports(self.config)

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "postier", "serve", "--allow-root", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for_port(self.ports["smtp"], alive=self.proc, log=self.log_path)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for a child already told to stop (no second signal); killed if it does not stop in
        time, and that fails."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; one that does not stop in time is killed (never left behind) and fails."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
