"""``postier explain tls DOMAIN``: the TLS decision for one recipient domain, looked up live.

Theory of operation. ``explain_tls`` asks everything a delivery would ask — the MX records, the
MTA-STS record and policy (fetched now, never from or into the delivery cache), and, with
``dns.dnssec``, the DNSSEC status of the MX, address and TLSA records — then runs the same planner
as delivery (``plan.TlsPlanner``) and reports per MX host: the policy that applies and its source,
why, what a delivery needs (STARTTLS, a verified certificate for the name, a TLSA match), whether a
REQUIRETLS message could go there, and every record found broken on the way. It never raises for
what the DNS or the policy server did.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from postier.delivery.security.dane_lookup import DaneHost, DaneLookup
from postier.delivery.security.mtasts import StsMode, record_name
from postier.delivery.security.mtasts_lookup import MtaSts, StsAnswer
from postier.delivery.security.plan import TlsPlanner
from postier.delivery.tlsprobe import probe
from postier.delivery.transport import Destination, DestinationKind, Hop, TlsPolicy
from postier.dns import DnsError, Resolver, resolve_mx

__all__ = ["HostReport", "TlsReport", "explain_tls", "sts_summary"]


@dataclass(frozen=True, slots=True)
class HostReport:
    host: str
    policy: str
    source: str
    why: str
    needs: str
    requiretls: str
    addresses: tuple[str, ...] = ()
    tlsa: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    probe: str = ""


@dataclass(frozen=True, slots=True)
class TlsReport:
    domain: str
    configured: tuple[str, str]
    mx: tuple[str, ...] = ()
    mx_problem: str = ""
    dnssec: str = ""
    sts: StsAnswer | None = None
    sts_record: str = ""
    hosts: tuple[HostReport, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


async def explain_tls(
    domain: str,
    resolver: Resolver,
    *,
    configured: TlsPolicy,
    configured_source: str,
    sts: MtaSts | None,
    dane: DaneLookup | None,
    probe_ca_file: str | None = None,
) -> TlsReport:
    """``probe_ca_file`` set (``""``: the system store): also connect to each host (``tlsprobe``)."""
    domain = domain.lower().rstrip(".")
    report = TlsReport(domain, (configured.value, configured_source))
    plan = await resolve_mx(resolver, domain, random.Random(0))
    if plan.reply is not None:
        return dataclasses.replace(report, mx_problem=str(plan.reply))
    hops = tuple(Hop(record.host) for record in plan.hosts)
    base = Destination(
        f"mx:{domain}",
        DestinationKind.MX,
        domain,
        hops,
        configured,
        False,
        None,
        configured.value,
        configured_source,
    )
    planner = TlsPlanner(sts, dane)
    planned = await planner.plan(base)
    answer = await sts.policy(domain) if sts is not None else None  # the planner's own, shared in flight
    dnssec, dane_hosts = await _dnssec(domain, plan.is_implicit, hops, dane)
    sts_record = await _sts_record(resolver, domain)
    reports = []
    for hop in planned.hosts:
        host = await _host(resolver, planned, hop, dane_hosts.get(hop.host))
        if probe_ca_file is not None and host.addresses and hop.refusal is None:
            verify = host.policy == "mta-sts" or (hop.tls or planned.tls) is TlsPolicy.VERIFY
            found = await probe(hop, host.addresses[0], verify=verify, ca_file=probe_ca_file)
            host = dataclasses.replace(host, probe=found)
        reports.append(host)
    return dataclasses.replace(
        report,
        mx=tuple(f"{r.preference} {r.host}" for r in plan.hosts),
        dnssec=dnssec,
        sts=answer,
        sts_record=sts_record,
        hosts=tuple(reports),
        problems=(planned.refusal and (str(planned.refusal),)) or (),
    )


async def _dnssec(
    domain: str, implicit: bool, hops: tuple[Hop, ...], dane: DaneLookup | None
) -> tuple[str, dict[str, DaneHost]]:
    if dane is None:
        return "off (dns.dnssec = false): DANE is not used", {}
    secure, why = await dane.mx_is_secure(domain, implicit)
    if not secure:
        return f"insecure: {why}; DANE does not apply", {}
    return "the MX records are DNSSEC-secure", {h.host: await dane.lookup_host(h.host) for h in hops}


async def _sts_record(resolver: Resolver, domain: str) -> str:
    try:
        texts = await resolver.txt(record_name(domain))
    except DnsError as exc:
        return f"{record_name(domain)} TXT: {exc.describe}"
    found = [t for t in texts if t.startswith("v=STSv1")]
    return "; ".join(repr(t) for t in found) or f"{record_name(domain)}: no v=STSv1 record"


async def _host(resolver: Resolver, destination: Destination, hop: Hop, dane: DaneHost | None) -> HostReport:
    try:
        addresses = tuple(await resolver.addresses(hop.host))
        problems: tuple[str, ...] = ()
    except DnsError as exc:
        addresses, problems = (), (f"{hop.host}: {exc.describe}",)
    label = hop.tls_label or destination.tls_label
    source = hop.tls_source or destination.tls_source
    tls = hop.tls or destination.tls
    if dane is not None and dane.state in ("unusable", "failed"):
        problems += (dane.why,)
    if hop.refusal is not None:
        why = f"not usable: {hop.refusal}"
        needs = "nothing can be delivered to this host"
    elif hop.tlsa:
        why = dane.why if dane is not None else "secure TLSA records"
        needs = "STARTTLS, and a certificate chain matching one of the TLSA records"
    elif label == "mta-sts":
        why = f"the MTA-STS policy ({source}) is enforce and names {hop.host}"
        needs = f"STARTTLS, and a certificate for {hop.host} from a trusted CA"
    else:
        why = _why_configured(destination, dane)
        needs = {
            TlsPolicy.NONE: "nothing: plain text",
            TlsPolicy.OPPORTUNISTIC: "nothing: STARTTLS when offered, else plain text",
            TlsPolicy.REQUIRED: "STARTTLS (the certificate is not checked)",
            TlsPolicy.VERIFY: f"STARTTLS, and a certificate for {hop.host} from a trusted CA",
        }[tls]
    return HostReport(
        hop.host,
        label,
        source,
        why,
        needs,
        _requiretls(destination, hop),
        addresses,
        tuple(str(r) for r in hop.tlsa) or (dane.all_records if dane is not None else ()),
        problems,
    )


def _why_configured(destination: Destination, dane: DaneHost | None) -> str:
    parts = []
    if destination.tls_label == "mta-sts-testing":
        parts.append("the MTA-STS policy is in testing mode: failures are only logged")
    if dane is not None and dane.state == "none":
        parts.append(f"no DANE ({dane.why})")
    parts.append(f"{destination.tls_source} says {destination.tls.value}")
    return "; ".join(parts)


def _requiretls(destination: Destination, hop: Hop) -> str:
    if hop.refusal is not None:
        return "no (the host is not usable)"
    if hop.tlsa or destination.tls_label == "mta-sts":
        return "yes, if the server offers REQUIRETLS (its certificate is authenticated)"
    return "no: bounced 5.7.30 (neither DANE nor MTA-STS enforce authenticates this host)"


def sts_summary(answer: StsAnswer | None) -> str:
    if answer is None:
        return "off (delivery.mta_sts = false)"
    if answer.policy is None:
        return "no policy"
    p = answer.policy
    mode = {StsMode.ENFORCE: "enforce", StsMode.TESTING: "testing", StsMode.NONE: "none (ignored)"}[p.mode]
    return f"mode {mode}, mx {', '.join(p.mx) or '-'}, max_age {p.max_age_s} s, id {answer.id}"
