"""DKIM signing for the "Postier, DKIM" benchmark server: an Ed25519 and an RSA-2048 key for the
load generator's domain (smtp-source writes ``From: <bench@client.test>``) under the instance's
data_dir, and a DNS responder serving their records, so that every message is signed twice (the
costlier case: a domain with both keys) exactly as in production — the keys sign only once their
records are seen."""

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
def dkim_dns(data_dir: Path) -> Iterator[str]:
    """Make the keys under ``data_dir`` and serve their records; yields "host:port" for ``[dns]``."""
    records: dict[str, dict[str, list[str]]] = {}
    now = datetime.now(UTC)
    for selector, algorithm in (("bench-ed", "ed25519"), ("bench-rsa", "rsa")):
        key = generate_key(algorithm)  # type: ignore[arg-type]
        write_key(key_root(data_dir), SIGNING_DOMAIN, selector, key, now)
        records[record_name(selector, SIGNING_DOMAIN)] = {"TXT": [public_record(key)]}
    with DnsServer(records) as server:
        yield f"{server.host}:{server.port}"
