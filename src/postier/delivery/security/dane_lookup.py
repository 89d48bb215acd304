"""DANE discovery (RFC 7672 §2): which MX hosts of a domain DANE covers, from DNSSEC-secure records.

Theory of operation. ``DaneLookup.plan_hops(domain, hops)`` is asked by ``plan.TlsPlanner`` for MX
destinations, through a ``SecureResolver`` (a validating resolver whose AD bit is trusted,
``dns.dnssec``; without it nothing is secure and no host changes):

1. the domain's MX RRset must be secure (§2.2.1); for an implicit MX, the domain's address records.
   Insecure → DANE does not apply to any host (MTA-STS or the configuration decide);
2. per host, its address records (A, else AAAA) must be secure (§2.2.2), else the host is left as is;
3. then ``_25._tcp.HOST TLSA``:
   - none (NXDOMAIN / NODATA), or insecure → the host is left as is;
   - secure with usable records (usage 2 or 3, selector 0/1, matching 0/1/2) → ``Hop.tlsa``:
     STARTTLS is mandatory and the certificate must match (``tlscheck.dane_verdict``);
   - secure but no usable record → ``Hop.refusal`` ``4.7.5``: Postier never falls back to clear text
     (RFC 7672 §2.2 would allow unauthenticated TLS; we defer instead, so a broken TLSA set is fixed
     rather than silently ignored);
   - the lookup fails (SERVFAIL, bogus, timeout) for a secure host → ``Hop.refusal`` ``4.4.3``
     (§2.2: a host whose TLSA records cannot be had must not be used).

Hosts are looked up concurrently. ``lookup_host`` is the per-host half, reused by ``postier explain tls``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from postier.delivery.security.dane import Tlsa, parse_tlsa, tlsa_name, usable
from postier.delivery.transport import Hop
from postier.dns import DnsError, NxDomain, SecureResolver
from postier.mail.reply import EnhancedStatus, Reply

__all__ = ["DaneHost", "DaneLookup"]


@dataclass(frozen=True, slots=True)
class DaneHost:
    """What DNSSEC says of one MX host: ``state`` is "dane" (``records`` usable), "unusable" (a secure
    set with no usable record), "failed" (the TLSA lookup failed), or "none" with ``why``."""

    host: str
    state: str
    why: str
    records: tuple[Tlsa, ...] = ()
    all_records: tuple[str, ...] = ()


class DaneLookup:
    """See the module docstring."""

    def __init__(self, resolver: SecureResolver) -> None:
        self._resolver = resolver

    async def mx_is_secure(self, domain: str, implicit: bool) -> tuple[bool, str]:
        """(secure, why) for the domain's MX RRset (or, implicit MX, its addresses)."""
        if not self._resolver.is_validating:
            return False, "dns.dnssec is off: no answer is trusted as secure"
        rdtype = "A" if implicit else "MX"
        try:
            answer = await self._resolver.secure(domain, rdtype)
        except DnsError as exc:
            return False, f"{domain} {rdtype}: {exc.describe}"
        if not answer.is_secure:
            return False, f"the {rdtype} records of {domain} are not DNSSEC-secure"
        return True, ""

    async def plan_hops(self, domain: str, hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
        implicit = len(hops) == 1 and hops[0].host == domain
        secure, _ = await self.mx_is_secure(domain, implicit)
        if not secure:
            return hops
        found = await asyncio.gather(*(self.lookup_host(h.host) for h in hops))
        return tuple(_apply(hop, dane) for hop, dane in zip(hops, found, strict=True))

    async def lookup_host(self, host: str) -> DaneHost:
        secure, why = await self._addresses_secure(host)
        if not secure:
            return DaneHost(host, "none", why)
        name = tlsa_name(host)
        try:
            answer = await self._resolver.secure(name, "TLSA")
        except NxDomain:
            return DaneHost(host, "none", f"no TLSA records at {name}")
        except DnsError as exc:
            return DaneHost(host, "failed", f"the TLSA lookup of {name} failed: {exc.describe}")
        if not answer.records:
            return DaneHost(host, "none", f"no TLSA records at {name}")
        if not answer.is_secure:
            return DaneHost(host, "none", f"the TLSA records at {name} are not DNSSEC-secure")
        parsed = [parse_tlsa(text) for text in answer.records]
        good = tuple(usable(r for r in parsed if r is not None))
        if not good:
            return DaneHost(host, "unusable", f"no usable TLSA record at {name}", (), answer.records)
        return DaneHost(host, "dane", f"secure TLSA records at {name}", good, answer.records)

    async def _addresses_secure(self, host: str) -> tuple[bool, str]:
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._resolver.secure(host, rdtype)
            except DnsError as exc:
                return False, f"{host} {rdtype}: {exc.describe}"
            if answer.records:
                if answer.is_secure:
                    return True, ""
                return False, f"the address records of {host} are not DNSSEC-secure"
        return False, f"{host} has no address records"


def _apply(hop: Hop, dane: DaneHost) -> Hop:
    source = f"dnssec:{tlsa_name(hop.host)}"
    if dane.state == "dane":
        return dataclasses.replace(hop, tlsa=dane.records, tls_label="dane", tls_source=source)
    if dane.state == "unusable":
        reply = Reply(451, EnhancedStatus(4, 7, 5), "DANE: no usable TLSA record")
        return dataclasses.replace(hop, refusal=reply, tls_label="dane", tls_source=source)
    if dane.state == "failed":
        reply = Reply(451, EnhancedStatus(4, 4, 3), "DANE: the TLSA lookup failed")
        return dataclasses.replace(hop, refusal=reply, tls_label="dane", tls_source=source)
    return hop
