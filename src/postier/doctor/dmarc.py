"""DMARC for our domains (RFC 7489): one valid record at ``_dmarc.DOMAIN``, its policy on the staged
path to ``p=reject``, aggregate reports (``rua``) that can arrive — an address outside the domain
must authorize it (§7.1) — and SPF or DKIM able to align with the From domain."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postier.dns import DnsError, NoData, NxDomain
from postier.doctor.answers import RecordingLookup
from postier.doctor.findings import Finding, fail, ok, warn
from postier.mailauth.dmarc.record import DmarcRecord, parse_record
from postier.mailauth.orgdomain import org_domain

__all__ = ["DmarcData", "gather_dmarc", "judge_dmarc", "starting_record"]

_CANDIDATE = re.compile(r"^\s*v\s*=\s*dmarc1\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RuaCheck:
    address: str
    reachable: bool
    authorized: bool


@dataclass(frozen=True, slots=True)
class DmarcData:
    domain: str
    records: Sequence[str] | DnsError
    rua: Mapping[str, RuaCheck]


def starting_record(domain: str, policy: str = "p=none") -> str:
    """The record for a domain starting with DMARC: reports to ``dmarc-reports@DOMAIN``."""
    return f'_dmarc.{domain}. IN TXT "v=DMARC1; {policy}; rua=mailto:dmarc-reports@{domain}"'


async def _exists(lookup: RecordingLookup, name: str, rdtype: str) -> bool:
    try:
        return bool(await lookup.records(name, rdtype))
    except DnsError:
        return False


async def _check_rua(lookup: RecordingLookup, domain: str, address: str) -> RuaCheck:
    target = address.rpartition("@")[2].lower()
    reachable = await _exists(lookup, target, "MX") or await _exists(lookup, target, "A")
    if org_domain(target) == org_domain(domain):
        return RuaCheck(address, reachable, True)
    texts = await _texts(lookup, f"{domain}._report._dmarc.{target}")
    authorized = not isinstance(texts, DnsError) and any(_CANDIDATE.match(t) for t in texts)
    return RuaCheck(address, reachable, authorized)


async def _texts(lookup: RecordingLookup, name: str) -> Sequence[str] | DnsError:
    try:
        return await lookup.records(name, "TXT")
    except (NxDomain, NoData):
        return []
    except DnsError as exc:
        return exc


async def gather_dmarc(lookup: RecordingLookup, domain: str) -> DmarcData:
    texts = await _texts(lookup, f"_dmarc.{domain}")
    if isinstance(texts, DnsError):
        return DmarcData(domain, texts, {})
    records = [t for t in texts if _CANDIDATE.match(t)]
    parsed = parse_record(records[0]) if len(records) == 1 else None
    addresses = [u.mailto for u in parsed.rua if u.mailto] if parsed else []
    checks = await asyncio.gather(*(_check_rua(lookup, domain, a) for a in addresses))
    return DmarcData(domain, records, {c.address: c for c in checks})


def _policy(domain: str, record: DmarcRecord) -> Finding:
    if record.p == "none":
        reason = "p=none: monitoring only; once reports show your mail aligned: p=quarantine, then p=reject"
        return warn("dmarc", domain, reason, starting_record(domain, "p=quarantine"))
    if record.pct < 100 or record.testing:
        return warn(
            "dmarc", domain, f"p={record.p} applied to {record.pct}% (t={'y' if record.testing else 'n'})"
        )
    return ok("dmarc", domain, f"p={record.p}")


def _reports(data: DmarcData, record: DmarcRecord) -> list[Finding]:
    domain = data.domain
    if not record.rua:
        return [warn("dmarc", domain, "no rua=: no aggregate reports reach you", starting_record(domain))]
    out = []
    for check in data.rua.values():
        target = check.address.rpartition("@")[2]
        if not check.reachable:
            out.append(fail("dmarc", domain, f"rua {check.address}: {target} has no MX nor address"))
        elif not check.authorized:
            fix = f'{domain}._report._dmarc.{target}. IN TXT "v=DMARC1"'
            out.append(
                warn("dmarc", domain, f"rua {check.address} does not accept reports for {domain}", fix)
            )
        else:
            out.append(ok("dmarc", domain, f"rua {check.address}"))
    return out


def judge_dmarc(data: DmarcData, spf_aligns: bool, dkim_aligns: bool) -> list[Finding]:
    """``spf_aligns``: the domain's SPF authorizes every sending address (the envelope sender is in
    the domain, so SPF aligns); ``dkim_aligns``: a key of the domain signs (d= is the domain)."""
    domain = data.domain
    if isinstance(data.records, DnsError):
        return [fail("dmarc", domain, f"lookup failed: {data.records}")]
    if not data.records:
        return [fail("dmarc", domain, "no DMARC record", starting_record(domain))]
    if len(data.records) > 1:
        return [
            fail("dmarc", domain, f"{len(data.records)} DMARC records: keep one", starting_record(domain))
        ]
    record = parse_record(data.records[0])
    if record is None:
        reason = f"syntax error in {data.records[0]!r} (v=DMARC1 first, then p=none|quarantine|reject)"
        return [fail("dmarc", domain, reason, starting_record(domain))]
    out = [_policy(domain, record), *_reports(data, record)]
    via = [name for name, aligns in (("SPF", spf_aligns), ("DKIM", dkim_aligns)) if aligns]
    if via:
        out.append(ok("dmarc", domain, f"alignment possible through {' and '.join(via)}"))
    else:
        out.append(fail("dmarc", domain, "neither SPF nor DKIM can align: every message fails DMARC"))
    return out
