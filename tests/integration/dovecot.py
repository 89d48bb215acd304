"""A private Dovecot LMTP server (RFC 2033) for delivery tests.

``dovecot`` (fixture, a factory): ``server = dovecot(users=["alice@example.test"])`` writes a config
into a fresh directory and runs ``dovecot -F -c <config>`` (foreground, so the test owns the process),
speaking only LMTP, on the unix socket ``server.lmtp_path`` (mode 0666). Users are full addresses in
a passwd-file (passdb and userdb); an unknown one is refused at RCPT with ``550 5.1.1``. Each user's
mail goes to ``<dir>/mail/<user>/Maildir``; ``server.delivered(user)`` returns the files in its
``new/``. Dovecot prepends ``Return-Path``, ``Delivered-To`` and ``Received`` to each message.

``dovecot(users=[...], tcp="127.0.0.5")`` also listens for LMTP on TCP at ``server.tcp_address``
(``"127.0.0.5:<free port>"``). ``server.stop()`` / ``server.start()`` stop and start the same
instance again (same socket path, port, users and mail), for "the LMTP server is down" tests.
``quota={"bob@example.test": "1K"}`` gives a user a Dovecot quota (the quota plugin): a message
that does not fit is refused after DATA for that recipient alone (RFC 2033 per-recipient replies).

Why it looks like this (Dovecot 2.3 as packaged by Debian, started by root):

- ``default_internal_user = dovecot`` and ``default_login_user = dovenull``: the users the package
  creates; Dovecot refuses to run its internal processes as root.
- Mail is stored with the uid/gid of the ``dovecot`` user (given in the passwd-file), because
  Dovecot never delivers as uid 0. So the directory is made with ``tempfile.mkdtemp`` outside
  pytest's ``tmp_path`` (whose root is mode 0700) and the mail directory is chowned to that user.
- ``base_dir``, ``state_dir`` and a unique ``instance_name`` keep it apart from any system Dovecot
  (``scripts/install-peers`` stops that one) and from other instances.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.integration.harness import free_port

__all__ = ["DovecotLmtp", "dovecot"]

_CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = postier-test-{name}
protocols = lmtp
listen = 127.0.0.1
ssl = no
log_path = {dir}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = quota
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
service lmtp {{
  unix_listener {dir}/lmtp {{
    mode = 0666
  }}
{inet}}}
"""

_INET = """\
  inet_listener lmtp {{
    address = {host}
    port = {port}
  }}
"""


class DovecotLmtp:
    """One running Dovecot; see the module docstring."""

    def __init__(
        self, users: Sequence[str], tcp: str | None = None, quota: Mapping[str, str] | None = None
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="postier-dovecot-"))
        self.dir.chmod(0o755)
        self.lmtp_path = str(self.dir / "lmtp")
        owner = pwd.getpwnam("dovecot")
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, owner.pw_uid, owner.pw_gid)
        quota = quota or {}
        lines = [
            f"{u}:{{PLAIN}}unused:{owner.pw_uid}:{owner.pw_gid}::{mail / u}::"
            + (f"userdb_quota_rule=*:storage={quota[u]}" if u in quota else "")
            + "\n"
            for u in users
        ]
        (self.dir / "passwd").write_text("".join(lines))
        self.tcp_address = ""
        inet = ""
        if tcp is not None:
            port = free_port(tcp)
            self.tcp_address = f"{tcp}:{port}"
            inet = _INET.format(host=tcp, port=port)
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(_CONFIG.format(dir=self.dir, name=self.dir.name, inet=inet))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Run Dovecot (again); returns once its LMTP socket (and TCP port) accept connections."""
        with (self.dir / "stderr").open("ab") as stderr:
            self.proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine
        while not self._is_ready():
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start: {self.log()}")
            time.sleep(0.02)

    def _is_ready(self) -> bool:
        targets: list[tuple[int, object]] = [(socket.AF_UNIX, self.lmtp_path)]
        if self.tcp_address:
            host, port = self.tcp_address.rsplit(":", 1)
            targets.append((socket.AF_INET, (host, int(port))))
        for family, address in targets:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                try:
                    s.connect(address)
                except OSError:
                    return False
        return True

    def log(self) -> str:
        parts = [
            p.read_text(errors="replace")
            for p in (self.dir / "stderr", self.dir / "dovecot.log")
            if p.exists()
        ]
        return "\n".join(parts)

    def delivered(self, user: str) -> list[bytes]:
        new = self.dir / "mail" / user / "Maildir" / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []

    def stop(self) -> None:
        """Stop Dovecot (its socket and port refuse connections); ``start()`` runs it again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[Callable[..., DovecotLmtp]]:
    """Factory: ``dovecot(users=[...])`` → a running ``DovecotLmtp``, stopped after the test."""
    servers: list[DovecotLmtp] = []

    def start(
        users: Sequence[str] = ("alice@example.test", "bob@example.test"),
        tcp: str | None = None,
        quota: Mapping[str, str] | None = None,
    ) -> DovecotLmtp:
        server = DovecotLmtp(users, tcp, quota)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.remove()
