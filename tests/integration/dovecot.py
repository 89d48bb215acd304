"""A private Dovecot LMTP server (RFC 2033) for delivery tests.

``dovecot`` (fixture, a factory): ``server = dovecot(users=["alice@example.test"])`` writes a config
into a fresh directory and runs ``dovecot -F -c <config>`` (foreground, so the test owns the process),
speaking only LMTP, on the unix socket ``server.lmtp_path`` (mode 0666). Users are full addresses in
a passwd-file (passdb and userdb); an unknown one is refused at RCPT with ``550 5.1.1``. Each user's
mail goes to ``<dir>/mail/<user>/Maildir``; ``server.delivered(user)`` returns the files in its
``new/``. Dovecot prepends ``Return-Path``, ``Delivered-To`` and ``Received`` to each message.

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
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

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
}}
"""


class DovecotLmtp:
    """One running Dovecot; see the module docstring."""

    def __init__(self, users: Sequence[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="postier-dovecot-"))
        self.dir.chmod(0o755)
        self.lmtp_path = str(self.dir / "lmtp")
        owner = pwd.getpwnam("dovecot")
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, owner.pw_uid, owner.pw_gid)
        lines = [f"{u}:{{PLAIN}}unused:{owner.pw_uid}:{owner.pw_gid}::{mail / u}\n" for u in users]
        (self.dir / "passwd").write_text("".join(lines))
        config = self.dir / "dovecot.conf"
        config.write_text(_CONFIG.format(dir=self.dir, name=self.dir.name))
        with (self.dir / "stderr").open("wb") as stderr:
            self.proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while not os.path.exists(self.lmtp_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start: {self.log()}")
            time.sleep(0.02)

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
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[Callable[..., DovecotLmtp]]:
    """Factory: ``dovecot(users=[...])`` → a running ``DovecotLmtp``, stopped after the test."""
    servers: list[DovecotLmtp] = []

    def start(users: Sequence[str] = ("alice@example.test", "bob@example.test")) -> DovecotLmtp:
        server = DovecotLmtp(users)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
