"""The sending addresses on DNS block lists (RFC 5782): a warning per listing, with where to ask
for removal. A listed address answers ``A 127.0.0.x`` under the zone; ``127.255.255.x`` is the list
refusing the query (Spamhaus: a public or unregistered resolver), not a listing."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from postier.dns import DnsError, NoData, NxDomain
from postier.doctor.answers import RecordingLookup
from postier.doctor.findings import Finding, ok, warn

__all__ = ["DEFAULT_ZONES", "Listing", "gather_dnsbl", "judge_dnsbl", "query_name"]

DEFAULT_ZONES = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")
"""The major block lists, asked when ``--dnsbl`` names none."""

_DELIST = {
    "zen.spamhaus.org": "https://check.spamhaus.org/ (look up the address, follow the removal steps)",
    "bl.spamcop.net": "https://www.spamcop.net/bl.shtml (listings expire 24 h after the last report)",
    "b.barracudacentral.org": "https://www.barracudacentral.org/rbl/removal-request",
}


@dataclass(frozen=True, slots=True)
class Listing:
    ip: str
    zone: str
    answer: Sequence[str] | DnsError
    reason: Sequence[str] = ()


def query_name(ip: str, zone: str) -> str:
    """``4.3.2.1.ZONE`` for 1.2.3.4; nibbles for IPv6 (RFC 5782 §2.1, §2.4)."""
    reverse = ipaddress.ip_address(ip).reverse_pointer
    return reverse.rsplit(".", 2)[0] + "." + zone.rstrip(".")


async def _one(lookup: RecordingLookup, ip: str, zone: str) -> Listing:
    name = query_name(ip, zone)
    try:
        answer = await lookup.records(name, "A")
    except DnsError as exc:
        return Listing(ip, zone, exc)
    try:
        reason: Sequence[str] = await lookup.records(name, "TXT")
    except DnsError:
        reason = ()
    return Listing(ip, zone, answer, reason)


async def gather_dnsbl(lookup: RecordingLookup, ips: Sequence[str], zones: Sequence[str]) -> list[Listing]:
    return list(await asyncio.gather(*(_one(lookup, ip, z) for ip in ips for z in zones)))


def judge_dnsbl(listing: Listing) -> Finding:
    subject = f"{listing.ip} {listing.zone}"
    if isinstance(listing.answer, (NxDomain, NoData)):
        return ok("dnsbl", subject, f"not listed on {listing.zone}")
    if isinstance(listing.answer, DnsError):
        return warn("dnsbl", subject, f"could not ask {listing.zone}: {listing.answer.describe}")
    if all(a.startswith("127.255.255.") for a in listing.answer):
        return warn("dnsbl", subject, f"{listing.zone} refused the query ({', '.join(listing.answer)})")
    why = f": {listing.reason[0]}" if listing.reason else ""
    delist = _DELIST.get(listing.zone, f"the delisting page of {listing.zone}")
    answer = ", ".join(listing.answer)
    return warn("dnsbl", subject, f"listed on {listing.zone} ({answer}){why}", f"ask for removal: {delist}")
