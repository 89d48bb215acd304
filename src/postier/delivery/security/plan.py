"""The TLS plan of one MX destination: which policy applies to each host, and why.

Theory of operation. The router builds an MX ``Destination`` with the configured policy
(``delivery.tls_policy`` for the domain, else ``delivery.tls``) and hands it to ``TlsPlanner.plan``,
which may raise it, in this order of precedence (highest first):

1. **DANE** (RFC 7672), per host: when the resolver validates DNSSEC (``dns.dnssec``), the MX
   RRset, the host's addresses and its ``_25._tcp`` TLSA RRset are all secure → TLS is mandatory and
   the certificate must match a record (``Hop.tlsa``). A secure TLSA set with no usable record, or a
   TLSA lookup that fails for a secure host, makes the host unusable (``Hop.refusal``): never clear text.
2. **MTA-STS** (RFC 8461), per domain: ``enforce`` → only MX hosts the policy names, each with a
   verified certificate (VERIFY); the others are kept with a ``4.7.5`` refusal (never tried, but
   ``TLS-Required: No`` may lift it); none named → the destination is deferred with ``4.7.5``;
   ``testing`` → delivered as configured, and what enforce would have refused is logged; ``none`` → ignored.
3. ``delivery.tls_policy`` for the domain, then 4. ``delivery.tls``.

Every host and the destination carry a label and a source (``tls_policy=dane
source=dnssec:_25._tcp.mx.example.org``) that the courier copies to each attempt's log line. A
destination raised to DANE or MTA-STS gets its own key (``mx:example.org/mta-sts``) so that a pooled
connection set up under a weaker policy is never reused for it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from postier.delivery.security.mtasts import StsMode, allowed_hosts
from postier.delivery.security.mtasts_lookup import MtaSts, StsAnswer
from postier.delivery.transport import Destination, Hop, TlsPolicy
from postier.mail.reply import EnhancedStatus, Reply
from postier.observe import fields, get_logger

__all__ = ["DaneHosts", "TlsPlanner"]

_log = get_logger("postier.delivery.tls")
STS_NO_MX = EnhancedStatus(4, 7, 5)


class DaneHosts(Protocol):
    async def plan_hops(self, domain: str, hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
        """The hops, those that DANE covers given their TLSA records (or refusal)."""
        ...


class TlsPlanner:
    """See the module docstring. ``sts`` None: MTA-STS off; ``dane`` None: DANE off."""

    def __init__(self, sts: MtaSts | None = None, dane: DaneHosts | None = None) -> None:
        self.sts = sts
        self.dane = dane

    async def plan(self, destination: Destination) -> Destination:
        if self.dane is not None:
            hops = await self.dane.plan_hops(destination.domain, destination.hosts)
            if any(_is_dane(h) for h in hops):
                destination = dataclasses.replace(destination, hosts=hops, key=destination.key + "/dane")
        if self.sts is not None:
            destination = self._apply_sts(destination, await self.sts.policy(destination.domain))
        return destination

    def _apply_sts(self, destination: Destination, answer: StsAnswer) -> Destination:
        """MTA-STS over the hosts DANE does not cover (DANE hosts stay, whatever the policy says)."""
        domain = destination.domain
        for problem in answer.problems:
            _log.info("MTA-STS problem", extra=fields(domain=domain, problem=problem))
        policy = answer.policy
        if policy is None or policy.mode is StsMode.NONE:
            return destination
        source = f"mta-sts:id={answer.id}"
        names = [h.host for h in destination.hosts if not _is_dane(h)]
        allowed = set(allowed_hosts(policy, names))
        if policy.mode is StsMode.TESTING:
            for name in names:
                if name not in allowed:
                    _log.warning(
                        "MTA-STS testing: enforce would refuse this MX",
                        extra=fields(domain=domain, mx=name, policy_id=answer.id),
                    )
            return dataclasses.replace(destination, tls_label="mta-sts-testing", tls_source=source)
        hops = tuple(_sts_hop(h, h.host in allowed, domain, source) for h in destination.hosts)
        refusal = None
        if all(h.refusal is not None for h in hops) and not any(_is_dane(h) for h in hops):
            text = f"MTA-STS policy of {domain} (enforce) allows none of its MX hosts ({', '.join(names)})"
            refusal = Reply(451, STS_NO_MX, text)
        return dataclasses.replace(
            destination,
            key=f"{destination.key}/mta-sts",
            hosts=hops,
            tls=TlsPolicy.VERIFY,
            tls_label="mta-sts",
            tls_source=source,
            refusal=refusal,
        )


def _is_dane(hop: Hop) -> bool:
    return bool(hop.tlsa) or (hop.refusal is not None and hop.tls_label == "dane")


def _sts_hop(hop: Hop, is_allowed: bool, domain: str, source: str) -> Hop:
    """A host under MTA-STS enforce: VERIFY when the policy names it, else refused (kept, so that
    ``TLS-Required: No`` can still reach it)."""
    if _is_dane(hop):
        return hop
    if is_allowed:
        return dataclasses.replace(hop, tls=TlsPolicy.VERIFY)
    text = f"MTA-STS: {hop.host} is not an MX host the policy of {domain} names"
    return dataclasses.replace(
        hop, refusal=Reply(451, STS_NO_MX, text), tls_label="mta-sts", tls_source=source
    )
