"""MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) for our domains: the ``_mta-sts`` record, the policy file
served at ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` (fetched as senders fetch it), its
``mx`` lines covering every MX host, and the ``_smtp._tls`` reporting record. The parsing is
delivery's own (``delivery.security.mtasts``, ``tlsrpt``); the fixes are ``postier tls records``'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postier.delivery.security.mtasts import (
    Broken,
    StsMode,
    StsPolicy,
    StsRecord,
    allowed_hosts,
    parse_policy,
    parse_record,
    record_name,
)
from postier.delivery.security.mtasts_fetch import PolicyFetcher
from postier.delivery.security.publish import records_for
from postier.delivery.security.tlsrpt import parse_rua
from postier.dns import DnsError, NoData, NxDomain
from postier.doctor.answers import RecordingLookup
from postier.doctor.findings import Finding, fail, ok, warn

__all__ = ["StsData", "gather_sts", "judge_sts", "judge_tlsrpt", "tlsrpt_line"]


@dataclass(frozen=True, slots=True)
class StsData:
    domain: str
    record: StsRecord | Broken | None
    policy: StsPolicy | Broken | None
    tlsrpt: Sequence[str]
    """The TXT records at ``_smtp._tls.DOMAIN``."""


async def _texts(lookup: RecordingLookup, name: str) -> Sequence[str] | Broken:
    try:
        return await lookup.records(name, "TXT")
    except (NxDomain, NoData):
        return []
    except DnsError as exc:
        return Broken(f"lookup failed: {exc}")


async def gather_sts(lookup: RecordingLookup, fetcher: PolicyFetcher, domain: str) -> StsData:
    texts = await _texts(lookup, record_name(domain))
    record = texts if isinstance(texts, Broken) else parse_record(texts)
    policy: StsPolicy | Broken | None = None
    if isinstance(record, StsRecord):
        text = await fetcher.fetch(domain)
        policy = text if isinstance(text, Broken) else parse_policy(text)
    rpt = await _texts(lookup, f"_smtp._tls.{domain}")
    return StsData(domain, record, policy, [] if isinstance(rpt, Broken) else rpt)


def _publish(domain: str, hostname: str) -> tuple[str, ...]:
    published = records_for(domain, hostname, None)
    policy = [f"; serve at {published.policy_url}:", *(f";   {x}" for x in published.policy.splitlines())]
    return (*published.records[:2], *policy)


def judge_sts(data: StsData, mx_hosts: Sequence[str], hostname: str) -> list[Finding]:
    domain = data.domain
    if data.record is None:
        reason = "no MTA-STS record: senders deliver without verifying our certificate"
        return [warn("mta-sts", domain, reason, *_publish(domain, hostname))]
    if isinstance(data.record, Broken):
        return [
            fail("mta-sts", domain, f"_mta-sts record: {data.record.reason}", *_publish(domain, hostname))
        ]
    if isinstance(data.policy, Broken) or data.policy is None:
        why = data.policy.reason if data.policy else "no policy"
        return [fail("mta-sts", domain, f"policy file: {why}", *_publish(domain, hostname)[2:])]
    policy = data.policy
    missing = [h for h in mx_hosts if h not in allowed_hosts(policy, [h])]
    if missing and policy.mode is StsMode.ENFORCE:
        reason = f"the policy (enforce) does not list MX {', '.join(missing)}: senders will not deliver there"
        return [fail("mta-sts", domain, reason, *_publish(domain, hostname)[2:])]
    if missing:
        return [warn("mta-sts", domain, f"the policy does not list MX {', '.join(missing)}")]
    if policy.mode is StsMode.ENFORCE:
        return [ok("mta-sts", domain, f"policy enforce, max_age {policy.max_age_s} s, covers every MX")]
    reason = f"policy mode {policy.mode.value}: switch to enforce once TLS-RPT reports are clean"
    return [warn("mta-sts", domain, reason, "postier tls records --enforce")]


def tlsrpt_line(domain: str) -> str:
    return f'_smtp._tls.{domain}. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"'


def judge_tlsrpt(data: StsData) -> list[Finding]:
    domain = data.domain
    records = [t for t in data.tlsrpt if t.startswith("v=TLSRPTv1")]
    if not records:
        return [
            warn(
                "tls-rpt",
                domain,
                "no TLS-RPT record: no report of failed TLS deliveries",
                tlsrpt_line(domain),
            )
        ]
    if len(records) > 1:
        return [fail("tls-rpt", domain, f"{len(records)} TLS-RPT records: keep one", tlsrpt_line(domain))]
    uris = parse_rua(records)
    if not uris:
        return [fail("tls-rpt", domain, "no usable rua= (mailto: or https:)", tlsrpt_line(domain))]
    return [ok("tls-rpt", domain, f"reports to {', '.join(uris)}")]
