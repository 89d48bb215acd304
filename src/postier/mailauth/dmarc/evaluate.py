"""DMARC evaluation (RFC 7489 §4.2, §6.6.2), pure: the policy found, the SPF result and the DKIM
results in, one ``DmarcResult`` out.

- An identifier is *aligned* with the From domain when, in strict mode, the two are equal, and in
  relaxed mode (the default), their organizational domains are (§3.1).
- DMARC passes when SPF passed for an aligned domain, or any DKIM signature passed for an aligned d=.
- Otherwise, when an aligned identifier could not be checked now (DNS failure), the result is
  ``temperror``; else ``fail``.
- The policy of a failure is ``p=`` for the From domain's own record, ``sp=`` for a subdomain's, and
  ``np=`` for a subdomain that does not exist (DMARCbis). ``pct=`` samples: a failure outside the
  sample (``roll``, uniform in [0, 1), ≥ pct/100) gets the next weaker policy; DMARCbis ``t=y``
  (testing) always does (§6.6.4: reject → quarantine → none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.dmarc.discover import PolicyAnswer
from postier.mailauth.dmarc.record import DmarcRecord
from postier.mailauth.orgdomain import org_domain
from postier.mailauth.spf import SpfResult

__all__ = ["DmarcResult", "evaluate_dmarc", "is_aligned"]

_WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str
    """pass, fail, none (no policy), temperror or permerror."""
    from_domain: str
    policy_domain: str = ""
    policy: str = ""
    """The policy the domain asks for a failure (p=, sp= or np=), "" without a record."""
    disposition: str = "none"
    """What to do: none, quarantine or reject (the policy after pct= and t=)."""
    spf_aligned: bool = False
    dkim_domain: str = ""
    """The d= of the aligned DKIM signature that passed, else ""."""
    reason: str = ""
    record: DmarcRecord | None = None
    """The record that applied (for aggregate reports), else None."""

    @property
    def is_pass(self) -> bool:
        return self.result == "pass"


def is_aligned(identifier: str, from_domain: str, mode: str) -> bool:
    a, b = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not a:
        return False
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def evaluate_dmarc(
    answer: PolicyAnswer, *, spf: SpfResult | None, dkim: Sequence[DkimResult], roll: float = 0.0
) -> DmarcResult:
    domain = answer.from_domain
    if answer.temperror:
        return DmarcResult("temperror", domain, reason=answer.temperror)
    record = answer.record
    if record is None:
        return DmarcResult("none", domain, reason="no DMARC record")
    spf_aligned = spf is not None and spf.result == "pass" and is_aligned(spf.domain, domain, record.aspf)
    passed = [d for d in dkim if d.result == "pass" and is_aligned(d.domain, domain, record.adkim)]
    policy: str = record.p
    if answer.is_subdomain:
        policy = record.sp if answer.from_exists else record.np
    where = answer.policy_domain
    if spf_aligned or passed:
        dkim_domain = passed[0].domain if passed else ""
        return DmarcResult("pass", domain, where, policy, "none", spf_aligned, dkim_domain, "", record)
    spf_temp = spf is not None and spf.result == "temperror" and is_aligned(spf.domain, domain, record.aspf)
    dkim_temp = any(d.result == "temperror" and is_aligned(d.domain, domain, record.adkim) for d in dkim)
    if spf_temp or dkim_temp:
        why = "an aligned identifier could not be checked"
        return DmarcResult("temperror", domain, where, policy, "none", reason=why, record=record)
    disposition = policy
    sampled = roll * 100 < record.pct
    if record.testing or not sampled:
        disposition = _WEAKER[policy]
    why = "no aligned SPF or DKIM pass"
    if disposition != policy:
        why += " (testing, t=y)" if record.testing else f" (outside pct={record.pct})"
    return DmarcResult("fail", domain, where, policy, disposition, reason=why, record=record)
