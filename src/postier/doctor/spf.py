"""SPF for our domains (RFC 7208): one record, valid, within the limits of §4.6.4 (10 DNS-querying
terms, 2 void lookups — counted by the same evaluator as inbound SPF, ``mailauth.spf.audit_spf``),
authorizing every sending address, and ending in ``~all`` or ``-all``."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from spftrace.errors import SpfPermError
from spftrace.parser import parse

from postier.dns import DnsError, NoData, NxDomain
from postier.doctor.answers import RecordingLookup
from postier.doctor.findings import Finding, fail, ok, warn
from postier.mailauth.spf import SpfAudit, audit_spf

__all__ = ["COUNTING_IP", "SpfData", "gather_spf", "judge_spf", "suggested_spf"]

COUNTING_IP = "192.0.2.1"
"""An address no record authorizes (TEST-NET-1, RFC 5737): walking the record for it visits every
term up to ``all``, so its audit counts every lookup the record can need."""

MAX_TERMS = 10
MAX_VOID = 2


@dataclass(frozen=True, slots=True)
class SpfData:
    domain: str
    records: Sequence[str] | DnsError
    """The TXT records starting with ``v=spf1`` (§4.5), or the lookup error."""
    walk: SpfAudit | None = None
    """The audit for ``COUNTING_IP`` (None when there is not exactly one record)."""
    by_ip: tuple[tuple[str, SpfAudit], ...] = ()


def _is_spf(text: str) -> bool:
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


async def gather_spf(lookup: RecordingLookup, domain: str, ips: Sequence[str]) -> SpfData:
    try:
        texts = await lookup.records(domain, "TXT")
    except (NxDomain, NoData):
        return SpfData(domain, [])
    except DnsError as exc:
        return SpfData(domain, exc)
    records = [t for t in texts if _is_spf(t)]
    if len(records) != 1:
        return SpfData(domain, records)
    audits = await asyncio.gather(*(audit_spf(lookup, ip, domain) for ip in (COUNTING_IP, *ips)))
    return SpfData(domain, records, audits[0], tuple(zip(ips, audits[1:], strict=True)))


def _mechanism(ip: str) -> str:
    version = ipaddress.ip_address(ip).version
    return f"ip{version}:{ip}"


def suggested_spf(domain: str, ips: Sequence[str], current: str = "") -> str:
    """The record to publish: ``current`` with the missing addresses added before its ``all``, or a
    new one (``v=spf1 mx ip4:… ~all``)."""
    terms = current.split()[1:] if current else ["mx", "~all"]
    missing = [_mechanism(ip) for ip in ips if _mechanism(ip) not in terms]
    tail = [t for t in terms if t.lstrip("+-~?").lower() == "all" or t.lower().startswith("redirect=")]
    if not tail:
        tail = ["~all"]
    head = [t for t in terms if t not in tail]
    return f'{domain}. IN TXT "{" ".join(["v=spf1", *head, *missing, *tail])}"'


def _ending(domain: str, text: str, ips: Sequence[str]) -> Finding:
    record = parse(text)
    last = next((t for t in reversed(record.terms) if t.is_mechanism), None)
    if record.redirect is not None and (last is None or last.name != "all"):
        return ok("spf", domain, f"ends with redirect={record.redirect.arg}")
    if last is None or last.name != "all":
        return warn(
            "spf", domain, "no all term: unlisted senders get neutral", suggested_spf(domain, ips, text)
        )
    ending = last.raw if last.raw[0] in "+-~?" else f"+{last.raw}"
    if ending in ("-all", "~all"):
        return ok("spf", domain, f"ends in {ending}")
    fixed = text.rsplit(" ", 1)[0] + " ~all"
    return fail(
        "spf", domain, f"ends in {ending}: anyone may send as {domain}", f'{domain}. IN TXT "{fixed}"'
    )


def judge_spf(data: SpfData, ips: Sequence[str]) -> list[Finding]:
    domain = data.domain
    if isinstance(data.records, DnsError):
        return [fail("spf", domain, f"TXT lookup failed: {data.records}")]
    if not data.records:
        return [fail("spf", domain, "no SPF record", suggested_spf(domain, ips))]
    if len(data.records) > 1:
        reason = f"{len(data.records)} SPF records: receivers see a permerror (RFC 7208 §4.5); keep one"
        return [fail("spf", domain, reason, suggested_spf(domain, ips, data.records[0]))]
    text = data.records[0]
    try:
        parse(text)
    except SpfPermError as exc:
        return [fail("spf", domain, f"syntax error: {exc}", suggested_spf(domain, ips))]
    out = [_limits(domain, data.walk)] if data.walk is not None else []
    for ip, audit in data.by_ip:
        if audit.result == "pass":
            out.append(ok("spf", domain, f"authorizes {ip} ({audit.reason})"))
        else:
            reason = f"does not authorize {ip}: {audit.result} ({audit.reason})"
            out.append(fail("spf", domain, reason, suggested_spf(domain, [ip], text)))
    out.append(_ending(domain, text, ips))
    return out


def _limits(domain: str, walk: SpfAudit) -> Finding:
    counts = f"{walk.dns_terms} DNS-lookup terms, {walk.void_lookups} void lookups"
    if walk.dns_terms > MAX_TERMS or walk.void_lookups > MAX_VOID:
        fix = "replace include:/a/mx/ptr/exists terms by ip4:/ip6: ranges (or drop unused includes)"
        return fail("spf", domain, f"{counts}: over the limit of {MAX_TERMS} and {MAX_VOID}", fix)
    if walk.result in ("permerror", "temperror"):
        return fail("spf", domain, f"the record does not evaluate: {walk.result} ({walk.reason})")
    return ok("spf", domain, f"one valid record; {counts}")
