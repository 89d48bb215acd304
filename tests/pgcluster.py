"""A PostgreSQL server of a test's own, to stop and restart without disturbing the shared one on
5432 (other engineers' tests use it): ``initdb`` into a fresh directory, ``pg_ctl start`` on a free
loopback port, trust auth, database ``postgres``. Run as the ``postgres`` user when the tests run as
root (PostgreSQL refuses to run as root). Made for the failure and several-node tests; each test that
uses one pays about two seconds for ``initdb``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PrivateCluster", "postgres_bin", "private_cluster"]


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl`` (Debian: /usr/lib/postgresql/NN/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


class PrivateCluster:
    def __init__(self, port: int, options: str = "") -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl)")
        self.bin, self.port, self.options = bindir, port, options
        self.dir = Path(tempfile.mkdtemp(prefix="postier-pg-"))
        self.data = self.dir / "data"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o755)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = list(argv)
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, timeout=120, cwd=self.dir)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            f" -c max_connections=200 -c shared_buffers=64MB {self.options}"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: end the sessions and shut down cleanly; ``immediate``: as a crash (recovery at
        the next start replays the WAL)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "log").read_text(errors="replace")
        return ""

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(port: int, options: str = "") -> Iterator[PrivateCluster]:
    """A new cluster, started (``options``: more ``postgres`` command-line options); removed after."""
    cluster = PrivateCluster(port, options)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
