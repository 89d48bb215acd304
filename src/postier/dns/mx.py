"""MX routing decisions (RFC 5321 §5.1, RFC 7505), as pure functions over what the DNS said.

Theory of operation: ``mx_targets`` turns the outcome of one MX lookup (a list of records or a typed
``DnsError``) into an ``MxPlan``: either the hosts to try, in order, or the reply that ends the
attempt for every recipient of the domain. ``drop_self`` then applies the loop rule. ``resolve_mx``
is the thin "fetch" half that asks a ``Resolver`` and hands the answer to the two pure halves.

    MX records            → sorted by preference, shuffled within one preference (injected RNG)
    NoData (no MX)        → the domain itself, preference 0 ("implicit MX", RFC 5321 §5.1)
    only "0 ."            → fail 556 5.1.10 (null MX, RFC 7505 §3)
    NxDomain              → fail 550 5.1.2 (bad destination system address, RFC 3463)
    TemporaryDnsError     → defer 451 4.4.3 (directory server failure, RFC 3463)
    we are an MX          → drop us and every MX of equal or lower preference; none left → 554 5.4.6
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from postier.dns.errors import DnsError, NoData, NxDomain
from postier.dns.resolver import MxRecord, Resolver
from postier.mail.reply import EnhancedStatus, Reply

__all__ = [
    "DNS_TEMPORARY_FAILURE",
    "MX_LOOP",
    "NO_SUCH_DOMAIN",
    "NULL_MX",
    "MxPlan",
    "drop_self",
    "mx_targets",
    "resolve_mx",
    "select_mx",
]

# RFC 7505 §3 / RFC 7504: a null MX fails at once with 556 5.1.10.
NULL_MX = Reply(556, EnhancedStatus(5, 1, 10), "Recipient domain does not accept mail (null MX)")
# RFC 3463 X.1.2: bad destination system address.
NO_SUCH_DOMAIN = Reply(550, EnhancedStatus(5, 1, 2), "Recipient domain does not exist")
# RFC 3463 X.4.3: directory server failure.
DNS_TEMPORARY_FAILURE = Reply(451, EnhancedStatus(4, 4, 3), "Temporary DNS failure for the recipient domain")
# RFC 3463 X.4.6: routing loop detected.
MX_LOOP = Reply(554, EnhancedStatus(5, 4, 6), "Mail for the recipient domain loops back to this server")


@dataclass(frozen=True, slots=True)
class MxPlan:
    """Where to take mail for ``domain``: ``hosts`` in the order to try them, or, when ``reply`` is
    set, no host at all and the reply that fails (5xx) or defers (4xx) every recipient of it."""

    domain: str
    hosts: tuple[MxRecord, ...] = ()
    reply: Reply | None = None
    is_implicit: bool = False

    @property
    def is_failed(self) -> bool:
        return self.reply is not None and self.reply.is_permanent

    @property
    def is_deferred(self) -> bool:
        return self.reply is not None and self.reply.is_transient


def select_mx(records: Iterable[MxRecord], rng: random.Random) -> list[MxRecord]:
    """RFC 5321 §5.1: lowest preference first; within one preference a random order, so that load
    spreads over equal MXs. A host listed twice is kept at its best preference only."""
    by_preference: dict[int, list[MxRecord]] = {}
    for record in records:
        by_preference.setdefault(record.preference, []).append(record)
    ordered: list[MxRecord] = []
    seen: set[str] = set()
    for preference in sorted(by_preference):
        group = [r for r in by_preference[preference] if r.host not in seen]
        group = list({r.host: r for r in group}.values())
        rng.shuffle(group)
        seen.update(r.host for r in group)
        ordered.extend(group)
    return ordered


def mx_targets(domain: str, answer: list[MxRecord] | DnsError, rng: random.Random) -> MxPlan:
    """The plan for ``domain`` given the MX lookup's records or its typed error."""
    domain = _normalize(domain)
    if isinstance(answer, NoData) or (isinstance(answer, list) and not answer):
        # RFC 5321 §5.1: no MX at all → the domain is its own implicit MX, preference 0.
        return MxPlan(domain, (MxRecord(0, domain),), is_implicit=True)
    if isinstance(answer, NxDomain):
        return MxPlan(domain, reply=NO_SUCH_DOMAIN)
    if isinstance(answer, DnsError):
        return MxPlan(domain, reply=DNS_TEMPORARY_FAILURE)
    real = [MxRecord(r.preference, _normalize(r.host)) for r in answer if not r.is_null]
    if not real:
        # RFC 7505 §3: "0 ." (of whatever preference, alone) says the domain takes no mail.
        return MxPlan(domain, reply=NULL_MX)
    # RFC 7505 §3 forbids a null MX beside others; if one is there anyway, the real ones still count.
    return MxPlan(domain, tuple(select_mx(real, rng)))


def drop_self(plan: MxPlan, local_names: Collection[str]) -> MxPlan:
    """RFC 5321 §5.1: "if the SMTP client finds its own name in the MX list, it MUST discard that
    record and all records of equal or higher preference value" — else mail would go round in a
    loop. ``local_names`` are this server's host names; if nothing remains, fail 5.4.6."""
    if plan.reply is not None:
        return plan
    ours = {_normalize(name) for name in local_names}
    own_preferences = [r.preference for r in plan.hosts if r.host in ours]
    if not own_preferences:
        return plan
    cutoff = min(own_preferences)
    kept = tuple(r for r in plan.hosts if r.preference < cutoff)
    if not kept:
        return MxPlan(plan.domain, reply=MX_LOOP, is_implicit=plan.is_implicit)
    return MxPlan(plan.domain, kept, is_implicit=plan.is_implicit)


async def resolve_mx(
    resolver: Resolver, domain: str, rng: random.Random, local_names: Collection[str] = ()
) -> MxPlan:
    """Ask ``resolver`` for the MX of ``domain`` and decide: ``drop_self(mx_targets(...))``."""
    answer: list[MxRecord] | DnsError
    try:
        answer = await resolver.mx(domain)
    except DnsError as exc:
        answer = exc
    return drop_self(mx_targets(domain, answer, rng), local_names)


def _normalize(name: str) -> str:
    return name.rstrip(".").lower() or "."
