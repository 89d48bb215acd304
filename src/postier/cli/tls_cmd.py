"""``postier tls records [-c FILE] [--enforce]``: the DNS records and the MTA-STS policy file to publish
for each of our local domains (``relay.local_domains`` but ``localhost``), with ``server.hostname``
as the MX and the TLSA digest of ``[tls] cert`` (or the self-signed one under data_dir)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from postier.config import Config, load_config
from postier.delivery.security.mtasts import StsMode
from postier.delivery.security.publish import records_for
from postier.mail.errors import PostierError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tls = subparsers.add_parser("tls", help="what to publish so that others deliver to us over TLS")
    sub = tls.add_subparsers(dest="tls_command", required=True)
    p = sub.add_parser("records", help="MTA-STS, TLSA and TLS-RPT records and the policy file, per domain")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--enforce", action="store_true", help="a policy in enforce mode (default: testing)")
    p.set_defaults(func=_records)


def _records(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else Config()
    except (PostierError, ValueError) as exc:
        print(f"postier tls: invalid configuration: {exc}", file=sys.stderr)
        return 2
    cert = Path(config.tls.cert) if config.tls.cert else Path(config.server.data_dir) / "tls" / "cert.pem"
    try:
        cert_pem: bytes | None = cert.read_bytes()
    except OSError:
        cert_pem = None
    mode = StsMode.ENFORCE if args.enforce else StsMode.TESTING
    domains = [d for d in config.relay.local_domains if d != "localhost"]
    if not domains:
        print("postier tls: no local domain but localhost (relay.local_domains)", file=sys.stderr)
        return 2
    blocks = []
    for domain in domains:
        published = records_for(domain, config.server.hostname, cert_pem, mode)
        lines = [f"; {domain}", *published.records, f"; serve at {published.policy_url} (text/plain):"]
        lines += [f";   {line}" for line in published.policy.splitlines()]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0
