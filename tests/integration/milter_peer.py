"""A real OpenDKIM as a milter for the tests: its own key (opendkim-genkey), config and loopback port
(or a unix socket), in the foreground; one per test (it starts in a fraction of a second)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_port, wait_for_port

__all__ = ["OpenDkim", "opendkim"]

_CONF = """Syslog no
Mode {mode}
Domain {domain}
Selector {selector}
KeyFile {key}
Socket inet:{port}@127.0.0.1
Canonicalization relaxed/relaxed
InternalHosts {internal}
PidFile {root}/opendkim.pid
Background no
RequireSafeKeys false
"""


class OpenDkim:
    def __init__(
        self,
        root: Path,
        *,
        mode: str = "s",
        domain: str = "example.test",
        selector: str = "test",
        internal_hosts: str = "127.0.0.1",
    ):
        self.root, self.mode, self.domain, self.selector = root, mode, domain, selector
        self.internal_hosts = internal_hosts
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["opendkim-genkey", "-D", str(self.root), "-d", self.domain, "-s", self.selector, "-b", "1024"],
            check=True,
        )
        key = self.root / f"{self.selector}.private"
        conf = self.root / "opendkim.conf"
        conf.write_text(
            _CONF.format(
                mode=self.mode,
                domain=self.domain,
                selector=self.selector,
                key=key,
                port=self.port,
                root=self.root,
                internal=self.internal_hosts,
            )
        )
        log = self.root / "opendkim.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["opendkim", "-f", "-x", str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, alive=self.proc, log=log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def opendkim(tmp_path: Path) -> Iterator[OpenDkim]:
    """OpenDKIM signing mail of example.test (sign mode, InternalHosts 127.0.0.1)."""
    if shutil.which("opendkim") is None:
        pytest.fail("opendkim is not installed: make peers (scripts/install-peers)")
    server = OpenDkim(tmp_path / "opendkim")
    server.start()
    yield server
    server.stop()
