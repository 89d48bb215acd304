"""DMARC policy discovery (RFC 7489 §6.6.3): the record at ``_dmarc.FROM-DOMAIN``, else at
``_dmarc.ORGANIZATIONAL-DOMAIN`` (Public Suffix List, ``orgdomain``). A DNS failure at either step is
a *temperror*: the policy that would apply is unknown. When the record found is the organizational
domain's, ``sp=`` applies to the subdomain, and DMARCbis ``np=`` when the From domain does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses

from postier.dns import NxDomain, TemporaryDnsError
from postier.mailauth.dmarc.record import DmarcRecord, parse_record
from postier.mailauth.lookup import RecordLookup, txt_or_none
from postier.mailauth.orgdomain import org_domain

__all__ = ["PolicyAnswer", "discover_policy", "from_domains"]


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    from_domain: str
    record: DmarcRecord | None = None
    policy_domain: str = ""
    """Where the record was found: the From domain or its organizational domain."""
    from_exists: bool = True
    """False when the From domain is NXDOMAIN (DMARCbis ``np=``); only asked when it matters."""
    temperror: str = ""
    """Why the policy is unknown (a DNS failure), else empty."""

    @property
    def is_subdomain(self) -> bool:
        return self.record is not None and self.policy_domain != self.from_domain


def from_domains(values: list[str]) -> list[str]:
    """The distinct domains of the addresses in the From fields ``values``, lowercased, in order."""
    domains: list[str] = []
    for _name, address in getaddresses(values):
        domain = address.rpartition("@")[2].strip().lower().rstrip(".")
        if "@" in address and domain and domain not in domains:
            domains.append(domain)
    return domains


async def _record_at(lookup: RecordLookup, domain: str) -> DmarcRecord | None:
    """The one DMARC record at ``_dmarc.domain``; none, or several, is no record (RFC 7489 §6.6.3)."""
    texts = [t for t in await txt_or_none(lookup, f"_dmarc.{domain}") if t.lstrip().startswith("v=DMARC1")]
    if len(texts) != 1:
        return None
    return parse_record(texts[0].strip())


async def discover_policy(lookup: RecordLookup, from_domain: str) -> PolicyAnswer:
    domain = from_domain.lower().rstrip(".")
    try:
        record = await _record_at(lookup, domain)
        if record is not None:
            return PolicyAnswer(domain, record, domain)
        org = org_domain(domain)
        if org == domain:
            return PolicyAnswer(domain)
        record = await _record_at(lookup, org)
        if record is None:
            return PolicyAnswer(domain)
        exists = True
        if record.np != record.sp:
            exists = await _exists(lookup, domain)
        return PolicyAnswer(domain, record, org, exists)
    except TemporaryDnsError as exc:
        return PolicyAnswer(domain, temperror=str(exc))


async def _exists(lookup: RecordLookup, domain: str) -> bool:
    """DMARCbis §4.7 np=: a domain exists unless the DNS says NXDOMAIN (NODATA is a name that exists)."""
    try:
        await lookup.records(domain, "A")
    except NxDomain:
        return False
    except Exception:  # NODATA or a failure: assume it exists (sp= applies, the safer reading)
        return True
    return True
