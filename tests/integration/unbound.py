"""A real validating resolver for DANE tests: Debian's unbound on 127.0.0.1:<free port>, serving a
zone signed by ``ldns-signzone`` with its key as the only trust anchor.

How: the zone is signed with a fresh ECDSA P-256 KSK and ZSK (``ldns-keygen``); unbound loads the
signed file as an ``auth-zone`` with ``for-upstream: yes`` and ``for-downstream: no``, so it answers
from it as if from an upstream server — through its validator, which checks every RRSIG against
the KSK's DS given as ``trust-anchor-file``. Answers from the zone get the AD bit; a record changed
after signing (``SignedZone(tamper=…)``) is bogus and answered SERVFAIL. Every other name is
in ``forward_zones`` is forwarded to the test's own DNS responder (``forward_to``) and is insecure
(no trust anchor covers it). (A forward zone for "." would also swallow the signed zone: unbound
then asks the forwarder for its DNSKEY instead of reading the auth-zone, and validation fails.)
The default ``local-zone: "test." static`` of unbound is switched off (``nodefault``).

    zone = SignedZone("dane.test", {"dane.test": {"MX": ["10 mx1.dane.test"]}, …}, workdir)
    with Unbound([zone], forward_to=dns.nameservers[0], workdir=…) as resolver:
        DnsPythonResolver(resolver.nameservers, dnssec=True)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.query
import pytest

from tests.integration.harness import free_port

__all__ = ["SignedZone", "Unbound", "unbound_factory"]

Records = Mapping[str, Mapping[str, Sequence[str]]]


class SignedZone:
    """``origin`` signed with fresh keys under ``workdir``; ``tamper`` maps a name to an A value put
    in place after signing (its RRSIG then fails)."""

    def __init__(
        self, origin: str, records: Records, workdir: Path, tamper: Mapping[str, str] | None = None
    ) -> None:
        self.origin = origin.rstrip(".")
        lines = [
            f"$ORIGIN {self.origin}.",
            "$TTL 300",
            f"@ IN SOA ns.{self.origin}. hostmaster.{self.origin}. 1 3600 600 86400 60",
            f"@ IN NS ns.{self.origin}.",
            "ns IN A 127.0.0.1",
        ]
        for name, by_type in records.items():
            for rdtype, values in by_type.items():
                lines += [f"{name.rstrip('.')}. IN {rdtype} {value}" for value in values]
        workdir.mkdir(parents=True, exist_ok=True)
        zone = workdir / f"{self.origin}.zone"
        zone.write_text("\n".join(lines) + "\n")
        ksk = _run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", self.origin], workdir)
        zsk = _run(["ldns-keygen", "-a", "ECDSAP256SHA256", self.origin], workdir)
        _run(["ldns-signzone", "-n", zone.name, ksk, zsk], workdir)
        self.signed = workdir / f"{zone.name}.signed"
        self.anchor = workdir / f"{ksk}.ds"
        if tamper:
            text = self.signed.read_text()
            for name, value in tamper.items():
                owner = f"{name.rstrip('.')}.\t300\tIN\tA\t"
                start = text.index(owner) + len(owner)
                text = text[:start] + value + text[text.index("\n", start) :]
            self.signed.write_text(text)


def _run(argv: list[str], cwd: Path) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Unbound:
    def __init__(
        self,
        zones: Sequence[SignedZone],
        *,
        forward_to: tuple[str, int],
        forward_zones: Sequence[str] = (),
        workdir: Path,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port(self.host, udp=True)
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        self._probe = f"{zones[0].origin}." if zones else f"{forward_zones[0]}."
        workdir.mkdir(parents=True, exist_ok=True)
        anchors = "".join(f'  trust-anchor-file: "{z.anchor}"\n' for z in zones)
        insecure = "".join(f'  local-zone: "{z.origin}." nodefault\n' for z in zones)
        auth = "".join(
            f'auth-zone:\n  name: "{z.origin}."\n  zonefile: "{z.signed}"\n'
            "  for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n"
            for z in zones
        )
        self.config = workdir / "unbound.conf"
        self.config.write_text(
            "server:\n"
            f"  interface: {self.host}\n  port: {self.port}\n"
            '  do-daemonize: no\n  username: ""\n  chroot: ""\n'
            f'  directory: "{workdir}"\n  pidfile: ""\n  use-syslog: no\n'
            f'  logfile: "{workdir / "unbound.log"}"\n  verbosity: 1\n'
            "  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n"
            '  qname-minimisation: no\n  local-zone: "test." nodefault\n'
            '  module-config: "validator iterator"\n'
            + anchors
            + insecure
            + auth
            + "".join(
                f'forward-zone:\n  name: "{name}."\n  forward-addr: {forward_to[0]}@{forward_to[1]}\n'
                for name in forward_zones
            )
        )

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [(self.host, self.port)]

    def start(self) -> None:
        binary = shutil.which("unbound") or "/usr/sbin/unbound"
        self._process = subprocess.Popen([binary, "-d", "-c", str(self.config)], cwd=self._workdir)
        query = dns.message.make_query(self._probe, "SOA")  # answered locally: no root servers here
        for _ in range(100):  # until it answers (any answer)
            if self._process.poll() is not None:
                raise RuntimeError(f"unbound exited: {(self._workdir / 'unbound.log').read_text()}")
            try:
                dns.query.udp(query, self.host, port=self.port, timeout=0.2)
                return
            except (OSError, dns.exception.Timeout):
                time.sleep(0.05)
        raise RuntimeError("unbound did not answer")

    def ask(self, name: str, rdtype: str) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD
        return dns.query.udp(query, self.host, port=self.port, timeout=5)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> Unbound:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def unbound_factory(tmp_path: Path) -> Iterator[object]:
    """``unbound_factory([zone], forward_to=(host, port), forward_zones=["plain.test"])`` → a started
    ``Unbound``."""
    started: list[Unbound] = []

    def make(
        zones: Sequence[SignedZone], *, forward_to: tuple[str, int], forward_zones: Sequence[str] = ()
    ) -> Unbound:
        workdir = tmp_path / f"unbound{len(started)}"
        server = Unbound(zones, forward_to=forward_to, forward_zones=forward_zones, workdir=workdir)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()
