"""``postier doctor [DOMAIN…] [--ip IP] [--json] [--verbose]``: the deliverability audit of our domains
and sending addresses (docs/doctor.md); ``postier doctor --records DOMAIN``: the zone snippet for a
new domain.

Defaults: the local domains (``relay.local_domains`` but ``localhost``) and the addresses this host
sends from (the source address the kernel picks towards the Internet, IPv4 and IPv6).

Exit codes: 0 nothing fails (warnings allowed), 1 at least one check fails, 2 usage or configuration
error.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from postier.config import Config, load_config, parse_hostport
from postier.delivery.security.mtasts_fetch import HttpsPolicyFetcher, PolicyFetcher
from postier.dns import DnsPythonResolver, Resolver
from postier.doctor.certificate import read_roots
from postier.doctor.dnsbl import DEFAULT_ZONES
from postier.doctor.findings import Level, has_failure
from postier.doctor.records import zone_snippet
from postier.doctor.run import Report, Setup, diagnose
from postier.mail.domain import normalize_domain
from postier.mail.errors import PostierError
from postier.mailauth.dkim import key_root
from postier.mailauth.dkim.keystore import KeyFile, load_keys

__all__ = ["register"]

_PROBES = ("198.51.100.1", "2001:db8::1")  # documentation addresses: only the route is looked at


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "doctor", help="audit deliverability: DNS records, keys, certificate, block lists"
    )
    p.add_argument("domains", nargs="*", metavar="DOMAIN", help="default: relay.local_domains but localhost")
    p.add_argument("-c", "--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: from --config, else var)")
    p.add_argument("--ip", action="append", default=[], metavar="IP", help="a sending address (repeatable)")
    p.add_argument(
        "--dnsbl", action="append", default=[], metavar="ZONE", help="a block list zone (repeatable)"
    )
    p.add_argument("--timeout", type=float, default=20.0, metavar="S", help="deadline for every lookup (20)")
    p.add_argument("--json", action="store_true", help="findings (and answers) as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="also every DNS answer used")
    p.add_argument("--records", metavar="DOMAIN", help="print the zone snippet for DOMAIN and stop")
    p.set_defaults(func=_doctor)


def sending_addresses() -> list[str]:
    """The source addresses the kernel would use towards the Internet (a UDP connect sends nothing)."""
    found = []
    for probe in _PROBES:
        family = socket.AF_INET6 if ":" in probe else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 53))
                found.append(str(sock.getsockname()[0]))
        except OSError:
            continue
    return found


def _setup(args: argparse.Namespace, config: Config) -> Setup:
    data_dir = Path(args.data_dir) if args.data_dir else Path(config.server.data_dir)
    domains = [normalize_domain(d) for d in args.domains] or [
        d for d in config.relay.local_domains if d != "localhost"
    ]
    if not domains:
        raise ValueError("no domain: name one, or set relay.local_domains")
    ips = [str(ipaddress.ip_address(ip)) for ip in args.ip] or sending_addresses()
    cert_pem = _read(config.tls.cert) if config.tls.cert else None
    return Setup(
        domains=tuple(domains),
        ips=tuple(ips),
        hostname=config.server.hostname,
        helo=config.delivery.helo_name or config.server.hostname,
        dkim=config.dkim,
        data_dir=data_dir,
        now=datetime.now(UTC),
        cert_path=config.tls.cert,
        cert_pem=cert_pem,
        roots=read_roots(config.delivery.ca_file),
        dnsbl_zones=_dnsbl_zones(args.dnsbl, config),
        deadline_s=args.timeout,
    )


def _dnsbl_zones(given: list[str], config: Config) -> tuple[str, ...]:
    """The block lists to look the sending addresses up in: ``--dnsbl``, else the configured ones
    (``[[antispam.dnsbl]]`` with a positive weight: allow lists are not block lists), else three public
    ones."""
    configured = tuple(z.zone for z in config.antispam.dnsbl if z.weight > 0)
    return tuple(given) or configured or DEFAULT_ZONES


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None  # said by the certificate check


def _resolver(config: Config) -> DnsPythonResolver:
    servers = [parse_hostport(ns, default_port=53) for ns in config.dns.nameservers]
    return DnsPythonResolver(servers or None)


def _print_text(report: Report, verbose: bool) -> None:
    for f in report.findings:
        print(f"{f.level.value:<4}  {f.check:<11}  {f.subject}: {f.reason}")
        for line in f.fix:
            print(f"{'':19}→ {line}")
    counts = {level: sum(f.level is level for f in report.findings) for level in Level}
    print(f"{counts[Level.OK]} ok, {counts[Level.WARN]} warn, {counts[Level.FAIL]} fail")
    if verbose:
        print("DNS answers used:")
        for answer in report.answers:
            print(f"  {answer.to_text()}")


def _records(args: argparse.Namespace, config: Config) -> int:
    setup = _setup(argparse.Namespace(**{**vars(args), "domains": [args.records]}), config)
    domain = setup.domains[0]
    keys, _ = load_keys(key_root(setup.data_dir), config.dkim.keys, setup.data_dir)
    newest: dict[str, KeyFile] = {}
    for key in sorted((k for k in keys if k.domain == domain), key=lambda k: k.created_at):
        newest[key.algorithm] = key
    print(zone_snippet(domain, setup.hostname, setup.ips, list(newest.values()), setup.cert_pem))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config) if args.config else Config()
        if args.records:
            return _records(args, config)
        setup = _setup(args, config)
    except (PostierError, ValueError, OSError) as exc:
        print(f"postier doctor: {exc}", file=sys.stderr)
        return 2
    resolver = _resolver(config)

    def fetcher(r: Resolver) -> PolicyFetcher:
        return HttpsPolicyFetcher(r, ca_file=config.delivery.ca_file, timeout_s=min(10.0, args.timeout))

    report = asyncio.run(diagnose(setup, resolver, fetcher))
    if args.json:
        counts = {level.value: sum(f.level is level for f in report.findings) for level in Level}
        out: dict[str, object] = {"findings": [f.to_json() for f in report.findings], "summary": counts}
        if args.verbose:
            out["answers"] = [a.to_text() for a in report.answers]
        print(json.dumps(out, indent=2))
    else:
        _print_text(report, args.verbose)
    return 1 if has_failure(report.findings) else 0
