"""DKIM signing for the "Postier, DKIM" benchmark server: an Ed25519 and an RSA-2048 key for the
load generator's domain (smtp-source writes ``From: <bench@client.test>``) under the instance's
data_dir, and a DNS responder serving their records, so that every message is signed as in
production (the keys sign only once their records are seen): once with Ed25519 (the goal's case),
or twice, Ed25519 and RSA (a domain with both keys, the costlier case)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.dnsserver import DnsServer

from postier.mailauth.dkim import key_root
from postier.mailauth.dkim.keys import generate_key, public_record, record_name
from postier.mailauth.dkim.keystore import write_key

__all__ = ["SIGNING_DOMAIN", "dkim_dns"]

SIGNING_DOMAIN = "client.test"


@contextlib.contextmanager
def dkim_dns(data_dir: Path, algorithms: tuple[str, ...] = ("ed25519", "rsa")) -> Iterator[str]:
    """Make the keys under ``data_dir`` and serve their records; yields "host:port" for ``[dns]``."""
    records: dict[str, dict[str, list[str]]] = {}
    now = datetime.now(UTC)
    for algorithm in algorithms:
        selector = f"bench-{algorithm}"
        key = generate_key(algorithm)  # type: ignore[arg-type]
        write_key(key_root(data_dir), SIGNING_DOMAIN, selector, key, now)
        records[record_name(selector, SIGNING_DOMAIN)] = {"TXT": [public_record(key)]}
    with DnsServer(records) as server:
        yield f"{server.host}:{server.port}"
