"""Independent DKIM verifiers for tests: dkimpy (in process) and OpenDKIM (``opendkim -t``, its
resolver, libunbound, forwarding to the test DNS responder). Both look the keys up in DNS."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rdatatype

__all__ = ["dkimpy_verify", "dnsfunc_for", "opendkim_verify", "static_dnsfunc"]

DnsFunc = Callable[..., bytes | None]


def static_dnsfunc(records: Mapping[str, str]) -> DnsFunc:
    """dkimpy's ``dnsfunc`` answering from a table (unit tests, no sockets)."""

    def get(name: bytes, timeout: float = 5) -> bytes | None:
        text = records.get(name.decode().rstrip("."))
        return None if text is None else text.encode()

    return get


def dnsfunc_for(host: str, port: int) -> DnsFunc:
    """dkimpy's ``dnsfunc`` asking a real DNS server (the test responder) over UDP."""

    def get(name: bytes, timeout: float = 5) -> bytes | None:
        query = dns.message.make_query(name.decode(), dns.rdatatype.TXT)
        response = dns.query.udp(query, host, port=port, timeout=timeout)
        for rrset in response.answer:
            for rdata in rrset:
                return b"".join(rdata.strings)  # type: ignore[attr-defined, no-any-return]
        return None

    return get


def dkimpy_verify(message: bytes, dnsfunc: DnsFunc) -> list[bool]:
    """One verdict per DKIM-Signature field, top to bottom."""
    checker = dkim.DKIM(message)
    count = len(re.findall(rb"(?im)^dkim-signature:", message.split(b"\r\n\r\n", 1)[0]))
    out = []
    for i in range(count):
        try:
            out.append(bool(checker.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            out.append(False)
    return out


def opendkim_verify(message: bytes, host: str, port: int, workdir: Path) -> tuple[dict[str, str], str]:
    """OpenDKIM's verdict per algorithm ({"ed25519-sha256": "pass", "rsa-sha256": "fail"}), from the
    Authentication-Results field its test mode prints; and that output, to show when it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    unbound = workdir / "unbound.conf"
    unbound.write_text(
        # unbound answers the special-use names of RFC 6761 (test., invalid., …) itself: not here.
        'server:\n  do-not-query-localhost: no\n  local-zone: "test." nodefault\n'
        f'forward-zone:\n  name: "."\n  forward-addr: {host}@{port}\n'
    )
    conf = workdir / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nResolverConfiguration {unbound}\n")
    path = workdir / "message.eml"
    path.write_bytes(message)
    done = subprocess.run(
        ["opendkim", "-x", str(conf), "-vv", "-t", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = done.stdout + done.stderr
    verdicts = re.findall(r"dkim=(\w+)(?:[^;(]|\([^)]*\))*?header\.a=([\w-]+)", text)
    return {a: r for r, a in verdicts}, text
