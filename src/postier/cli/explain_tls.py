"""``postier explain tls DOMAIN… [-c FILE] [--json]``: which TLS policy delivery to DOMAIN would use,
per MX host, and why — looked up live with the configuration's resolver (``dns.nameservers``,
``dns.dnssec``), MTA-STS settings and CA file (``delivery.ca_file``). The MTA-STS policy is fetched
now; the delivery cache in data_dir is neither read nor written."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from postier.config import Config, load_config, parse_hostport
from postier.delivery.security.dane_lookup import DaneLookup
from postier.delivery.security.explain import TlsReport, explain_tls, sts_summary
from postier.delivery.security.mtasts_cache import PolicyCache
from postier.delivery.security.mtasts_fetch import HttpsPolicyFetcher
from postier.delivery.security.mtasts_lookup import MtaSts
from postier.delivery.transport import TlsPolicy
from postier.dns import DnsPythonResolver
from postier.mail.domain import normalize_domain
from postier.mail.errors import PostierError

__all__ = ["explain_tls_command", "render"]


async def _report(config: Config, domain: str, probe: bool) -> TlsReport:
    servers = [parse_hostport(ns, default_port=53) for ns in config.dns.nameservers]
    resolver = DnsPythonResolver(servers or None, dnssec=config.dns.dnssec)
    d = config.delivery
    sts = None
    if d.mta_sts:
        fetcher = HttpsPolicyFetcher(resolver, ca_file=d.ca_file, timeout_s=d.mta_sts_timeout_s)
        sts = MtaSts(resolver, fetcher, PolicyCache(None), retry_s=0)
    ascii_domain = normalize_domain(domain)
    policies = {normalize_domain(k): v for k, v in d.tls_policy.items()}
    if ascii_domain in policies:
        configured, source = TlsPolicy(policies[ascii_domain]), "config:delivery.tls_policy"
    else:
        configured, source = TlsPolicy(d.tls), "config:delivery.tls"
    dane = DaneLookup(resolver) if config.dns.dnssec else None
    return await explain_tls(
        ascii_domain,
        resolver,
        configured=configured,
        configured_source=source,
        sts=sts,
        dane=dane,
        probe_ca_file=d.ca_file if probe else None,
    )


def render(report: TlsReport) -> list[str]:
    lines = [f"{report.domain}"]
    if report.mx_problem:
        return [*lines, f"  MX: {report.mx_problem}"]
    lines.append(f"  MX: {', '.join(report.mx)}")
    lines.append(f"  DNSSEC: {report.dnssec}")
    lines.append(f"  MTA-STS record: {report.sts_record}")
    lines.append(f"  MTA-STS policy: {sts_summary(report.sts)}")
    if report.sts is not None:
        lines.extend(f"  MTA-STS problem: {p}" for p in report.sts.problems)
    lines.append(f"  Configured: {report.configured[0]} ({report.configured[1]})")
    lines.extend(f"  Problem: {p}" for p in report.problems)
    for host in report.hosts:
        lines.append(f"  {host.host} [{', '.join(host.addresses) or 'no address'}]")
        lines.append(f"    policy: {host.policy} (source {host.source})")
        lines.append(f"    why: {host.why}")
        lines.append(f"    a delivery needs: {host.needs}")
        lines.extend(f"    TLSA: {t}" for t in host.tlsa)
        lines.append(f"    a REQUIRETLS message: {host.requiretls}")
        lines.extend(f"    broken: {p}" for p in host.problems)
        if host.probe:
            lines.append(f"    probe: {host.probe}")
    return lines


def explain_tls_command(args: argparse.Namespace, domains: list[str]) -> int:
    if not domains:
        print("postier explain tls: name a domain", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config) if args.config else Config()
        reports = [asyncio.run(_report(config, d, args.probe)) for d in domains]
    except (PostierError, ValueError) as exc:
        print(f"postier explain tls: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([_as_dict(r) for r in reports], indent=2, default=str))
        return 0
    print("\n\n".join("\n".join(render(r)) for r in reports))
    return 0


def _as_dict(report: TlsReport) -> dict[str, object]:
    data = dataclasses.asdict(report)
    data["sts"] = sts_summary(report.sts)
    return data
