"""SPF (RFC 7208): may this IP address send mail for a domain? ``check_spf`` answers for the MAIL FROM
identity (§2.4) or the HELO identity (§2.3).

Theory of operation: the evaluation itself — ``check_host()`` with its terms, macros (§7), ``exp=``
(§6.2), IPv6, the limit of 10 DNS-querying terms (§4.6.4) and of 2 void lookups — is spftrace's
``Evaluator``, pinned in pyproject and tested here against the RFC 7208 suite and pyspf. This module
is the interface the rest of Postier sees: it answers through Postier's own cached, asynchronous
resolver (``_Lookups``), never raises for an RFC outcome, and returns a small ``SpfResult`` whose
``reason`` says what decided (for the log).

An empty sender (``<>``, a bounce) is checked as ``postmaster@HELO`` (§2.4). A HELO that is not a
domain name (an address literal) has no SPF identity: ``none``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import spftrace
from spftrace.errors import SpfPermError, SpfTempError
from spftrace.macros import MacroContext, expand, truncate_domain
from spftrace.parser import Term
from spftrace.resolver import NOERROR, NXDOMAIN, SERVFAIL

from postier.dns import NoData, NxDomain, TemporaryDnsError
from postier.mailauth.lookup import RecordLookup

__all__ = ["SpfAudit", "SpfIdentity", "SpfResult", "audit_spf", "check_spf"]

_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"})


class SpfIdentity(StrEnum):
    MAILFROM = "mailfrom"
    HELO = "helo"


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str
    """pass, fail, softfail, neutral, none, permerror or temperror (RFC 7208 §2.6)."""
    identity: SpfIdentity
    domain: str
    """The domain checked: the sender's, or the HELO name."""
    sender: str
    """The address checked (``postmaster@HELO`` for the null sender and for HELO)."""
    reason: str = ""
    """What decided, for the log (the matching term, or the error)."""
    explanation: str | None = None
    """The domain's own explanation of a fail (``exp=``, §6.2), never sent unchecked to a client."""

    @property
    def is_fail(self) -> bool:
        return self.result == "fail"


class _Lookups(spftrace.BaseResolver):
    """spftrace's DNS transport on Postier's resolver (its cache, its time-outs, its servers)."""

    def __init__(self, lookup: RecordLookup) -> None:
        self._lookup_ = lookup

    async def _lookup(self, name: str, rtype: str) -> tuple[str, list[str]]:
        try:
            answers = await self._lookup_.records(name, rtype)
        except NxDomain:
            return NXDOMAIN, []
        except NoData:
            return NOERROR, []
        except TemporaryDnsError:
            return SERVFAIL, []
        if rtype == "MX":  # spftrace wants the exchange names alone
            answers = [a.split(" ", 1)[-1] for a in answers if a.split(" ", 1)[-1] != "."]
        return NOERROR, answers


_EXPLAIN_LITERAL = re.compile(r"^[\x20-\x24\x26-\x7e]*$")  # RFC 7208 §6.2: explain-string allows SP


class _Evaluator(spftrace.Evaluator):
    """spftrace's evaluator with one fix: spftrace 0.3.0 drops any ``exp=`` text containing a space,
    while RFC 7208 §6.2 allows them (explain-string = *( macro-string / SP )), so the text is expanded
    one macro-string at a time here. spftrace is pinned below 0.4 in pyproject."""

    async def _explanation(self, ip: Any, domain: str, sender: str, helo: str, exp_term: Term) -> str | None:
        ctx = MacroContext(
            ip=ip, sender=sender, helo=helo, domain=domain, receiver=self.receiver, session=self.session
        )
        try:
            with self.session.void_exempt():  # RFC 7208 §4.6.4: a missing exp= domain is no void lookup
                target = truncate_domain(await expand(exp_term.arg or "", ctx))
                if not spftrace.evaluator.valid_domain(target):
                    return None
                _, answers = await self.session.query(target, "TXT")
                if len(answers) != 1:
                    return None
                # spftrace expands one macro-string; the explain-string is macro-strings and SPs.
                parts = [await expand(part, ctx, exp=True) for part in answers[0].split(" ")]
        except (SpfPermError, SpfTempError, spftrace.DnsError, ValueError):
            return None
        if not _EXPLAIN_LITERAL.match(re.sub(r"%\{[^}]*\}", "", answers[0])):
            return None
        return " ".join(str(p) for p in parts)


async def check_spf(
    lookup: RecordLookup,
    ip: str,
    *,
    sender: str,
    helo: str,
    identity: SpfIdentity = SpfIdentity.MAILFROM,
    receiver: str = "postier",
    time_limit_s: float = 20.0,
) -> SpfResult:
    """The SPF result for ``ip``. ``sender`` is the envelope sender (``""`` for ``<>``); for the HELO
    identity it is ignored. ``receiver`` is the %{r} macro (our host name)."""
    helo = helo.strip().rstrip(".")
    if identity is SpfIdentity.HELO or not sender:
        if not helo or helo.startswith("[") or "." not in helo:
            return SpfResult("none", identity, helo, "", "HELO is not a domain name")
        sender = f"postmaster@{helo}"
    domain = sender.rpartition("@")[2].lower()
    evaluator = _Evaluator(_Lookups(lookup), spftrace.Limits(time_limit=time_limit_s), receiver=receiver)
    outcome = await evaluator.evaluate(ip, sender, helo)
    result = outcome.result if outcome.result in _RESULTS else "permerror"
    return SpfResult(result, identity, domain, sender, _reason(outcome), outcome.explanation)


@dataclass(frozen=True, slots=True)
class SpfAudit:
    """One domain's record walked for ``postier doctor``: the result for ``ip``, what decided, and the
    DNS-querying terms and void lookups the walk needed (counted past the limits)."""

    result: str
    reason: str
    dns_terms: int
    void_lookups: int


async def audit_spf(lookup: RecordLookup, ip: str, domain: str, *, time_limit_s: float = 20.0) -> SpfAudit:
    """``check_host(ip, domain)`` with the evaluator of ``check_spf`` in spftrace's audit mode: the
    counting goes on past the 10 terms and 2 void lookups of RFC 7208 §4.6.4 (the result is still a
    permerror then), so the operator learns how far over the record is."""
    limits = spftrace.Limits(time_limit=time_limit_s, audit=True)
    evaluator = _Evaluator(_Lookups(lookup), limits, receiver="postier")
    outcome = await evaluator.evaluate(ip, f"postmaster@{domain}", domain)
    result = outcome.result if outcome.result in _RESULTS else "permerror"
    return SpfAudit(result, _reason(outcome), outcome.dns_terms_used, outcome.void_lookups_used)


def _reason(outcome: spftrace.Result) -> str:
    """The event that decided: the matching mechanism, the default, or the error."""
    for event in reversed(outcome.trace.events):
        if event.kind == "mech_match":
            return f"matched {event.data.get('raw', '')}"
        if event.kind == "exit":
            return str(event.data.get("reason", ""))
        if event.kind == "eval_done" and event.data.get("reason") == "default":
            return "no mechanism matched"
    return ""
