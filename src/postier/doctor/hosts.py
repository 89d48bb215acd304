"""MX and forward-confirmed reverse DNS: do the domains' MX records lead here, and does the sending
address name a host whose addresses lead back to it (the HELO name)?"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postier.dns import DnsError, MxRecord, NoData, NxDomain
from postier.doctor.answers import RecordingLookup, reverse_name
from postier.doctor.findings import Finding, fail, ok, warn

__all__ = ["FcrdnsData", "MxData", "gather_fcrdns", "gather_mx", "judge_fcrdns", "judge_mx"]

Addresses = Sequence[str] | DnsError


@dataclass(frozen=True, slots=True)
class MxData:
    domain: str
    mx: Sequence[MxRecord] | DnsError
    addresses: Mapping[str, Addresses]


@dataclass(frozen=True, slots=True)
class FcrdnsData:
    ip: str
    ptr: Sequence[str] | DnsError
    forward: Mapping[str, Addresses]


async def _addresses(lookup: RecordingLookup, host: str) -> Addresses:
    try:
        return await lookup.addresses(host)
    except DnsError as exc:
        return exc


async def gather_mx(lookup: RecordingLookup, domain: str) -> MxData:
    try:
        mx = sorted(await lookup.mx(domain))
    except DnsError as exc:
        return MxData(domain, exc, {})
    hosts = [r.host for r in mx if not r.is_null]
    found = await asyncio.gather(*(_addresses(lookup, h) for h in hosts))
    return MxData(domain, mx, dict(zip(hosts, found, strict=True)))


async def gather_fcrdns(lookup: RecordingLookup, ip: str) -> FcrdnsData:
    try:
        names = await lookup.records(reverse_name(ip), "PTR")
    except DnsError as exc:
        return FcrdnsData(ip, exc, {})
    found = await asyncio.gather(*(_addresses(lookup, n) for n in names))
    return FcrdnsData(ip, names, dict(zip(names, found, strict=True)))


def judge_mx(data: MxData, hostname: str, ips: Sequence[str]) -> list[Finding]:
    """MX present, not null, every host resolving, and one of them this server (by name or address)."""
    domain, want = data.domain, f"{data.domain}. IN MX 10 {hostname}."
    if isinstance(data.mx, NxDomain):
        return [fail("mx", domain, f"{domain} does not exist in the DNS", want)]
    if isinstance(data.mx, NoData):
        return [fail("mx", domain, "no MX record (senders fall back to the domain's A record)", want)]
    if isinstance(data.mx, DnsError):
        return [fail("mx", domain, f"MX lookup failed: {data.mx}")]
    if any(r.is_null for r in data.mx):
        return [fail("mx", domain, "a null MX (RFC 7505): the domain says it takes no mail", want)]
    out: list[Finding] = []
    for host, addresses in data.addresses.items():
        if isinstance(addresses, DnsError):
            out.append(fail("mx", domain, f"MX host {host} has no address ({addresses.describe})"))
    names = ", ".join(f"{r.host} ({r.preference})" for r in data.mx)
    ours = {hostname.lower().rstrip(".")}
    mine = [
        h
        for h, a in data.addresses.items()
        if h in ours or (not isinstance(a, DnsError) and set(a) & set(ips))
    ]
    if mine:
        out.append(ok("mx", domain, f"MX {names}; {', '.join(mine)} is this server"))
    else:
        out.append(warn("mx", domain, f"MX {names}: none is this server ({hostname})", want))
    return out


def judge_fcrdns(data: FcrdnsData, hostname: str, helo: str) -> list[Finding]:
    """The PTR of the sending address names a host whose A/AAAA include the address, and that host is
    the HELO name (receivers such as Gmail compare them)."""
    ip, ptr_name = data.ip, reverse_name(data.ip)
    want = f"{ptr_name}. IN PTR {helo}.  ; set by the owner of {ip} (the hosting provider)"
    if isinstance(data.ptr, (NxDomain, NoData)):
        return [fail("fcrdns", ip, f"{ip} has no PTR record", want)]
    if isinstance(data.ptr, DnsError):
        return [fail("fcrdns", ip, f"PTR lookup failed: {data.ptr}")]
    confirmed = [n for n, a in data.forward.items() if not isinstance(a, DnsError) and ip in a]
    if not confirmed:
        names = ", ".join(data.ptr)
        fixes = [f"{n}. IN {'AAAA' if ':' in ip else 'A'} {ip}" for n in data.ptr]
        return [fail("fcrdns", ip, f"the PTR names {names}, whose addresses do not include {ip}", *fixes)]
    name = helo.lower().rstrip(".")
    if name in confirmed:
        return [ok("fcrdns", ip, f"{ip} ↔ {name}, the HELO name")]
    fixes = [f'[delivery] helo_name = "{confirmed[0]}"']
    if hostname.lower().rstrip(".") not in confirmed:
        fixes.append(f'[server] hostname = "{confirmed[0]}"')
    reason = f"{ip} ↔ {confirmed[0]}, but the HELO name is {helo}"
    return [warn("fcrdns", ip, reason, *fixes, want)]
