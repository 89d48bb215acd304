"""``postier doctor --records DOMAIN``: every record a new domain needs, in zone-file syntax — MX,
the host's address, SPF, DKIM (from the key store), DMARC (``p=none`` with reports, and the staged
path to ``p=reject``), MTA-STS (and the policy file to serve), TLS-RPT, and the PTR its address's
owner must set. Pure: the caller reads the keys and the certificate."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from postier.delivery.security.publish import records_for
from postier.doctor.dmarc import starting_record
from postier.doctor.mtasts import tlsrpt_line
from postier.doctor.spf import suggested_spf
from postier.mailauth.dkim.keys import zone_line
from postier.mailauth.dkim.keystore import KeyFile

__all__ = ["zone_snippet"]


def _address_lines(name: str, ips: Sequence[str]) -> list[str]:
    return [f"{name}. IN {'AAAA' if ipaddress.ip_address(ip).version == 6 else 'A'} {ip}" for ip in ips]


def zone_snippet(
    domain: str, hostname: str, ips: Sequence[str], keys: Sequence[KeyFile], cert_pem: bytes | None = None
) -> str:
    """``keys``: the domain's signing keys (those that sign or will, newest of each algorithm)."""
    published = records_for(domain, hostname, cert_pem)
    rua = f"rua=mailto:dmarc-reports@{domain}"
    lines = [
        f"; {domain}: the records to publish (postier doctor --records)",
        "$TTL 3600",
        f"{domain}. IN MX 10 {hostname}.",
        *_address_lines(hostname, ips),
        suggested_spf(domain, ips),
    ]
    if keys:
        lines += [zone_line(k.selector, k.domain, k.key) for k in keys]
    else:
        lines.append(f"; DKIM: no key yet: postier dkim keygen {domain}, then run this again")
    lines += [
        starting_record(domain),
        "; DMARC, once the reports (rua) show your mail passing, a few weeks each step:",
        f';   "v=DMARC1; p=quarantine; pct=25; {rua}" → "v=DMARC1; p=quarantine; {rua}"',
        f';   → "v=DMARC1; p=reject; {rua}"',
        published.records[0],
        "; the HTTPS server of the MTA-STS policy (here: this server's addresses):",
        *_address_lines(f"mta-sts.{domain}", ips),
        tlsrpt_line(domain),
    ]
    if cert_pem:
        lines.append(f"; with a DNSSEC-signed zone, DANE: {published.records[3]}")
    lines.append("; reverse DNS, set by the owner of each address (the hosting provider):")
    lines += [f"{ipaddress.ip_address(ip).reverse_pointer}. IN PTR {hostname}." for ip in ips]
    lines.append(f"; MTA-STS policy, served at {published.policy_url} (text/plain, HTTPS):")
    lines += [f";   {line}" for line in published.policy.splitlines()]
    return "\n".join(lines)
