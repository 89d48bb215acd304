"""The Gmail and Yahoo bulk-sender requirements (February 2024), one line each, read from the other
findings: what Postier can check is checked; what depends on the sending application is said."""

from __future__ import annotations

from collections.abc import Sequence

from postier.doctor.findings import Finding, Level, ok, warn

__all__ = ["judge_providers"]


def _worst(findings: Sequence[Finding], checks: set[str], subject_in: set[str] | None = None) -> Level:
    mine = [f for f in findings if f.check in checks and (subject_in is None or f.subject in subject_in)]
    if not mine:
        return Level.FAIL
    if any(f.level is Level.FAIL for f in mine):
        return Level.FAIL
    return Level.WARN if any(f.level is Level.WARN for f in mine) else Level.OK


def _line(check: str, subject: str, level: Level, text: str) -> Finding:
    """A summary line: ``ok``, or ``warn`` pointing at the findings above (they carry the failure
    and the fix, so one fault is one failing finding)."""
    if level is Level.OK:
        return ok(check, subject, text)
    return warn(check, subject, f"{text}: not yet (see the {level.value} findings above)")


def _is_alignment(finding: Finding, domain: str) -> bool:
    return (
        finding.check == "dmarc"
        and finding.subject == domain
        and finding.level is Level.OK
        and finding.reason.startswith("alignment possible")
    )


def judge_providers(domain: str, ips: Sequence[str], findings: Sequence[Finding]) -> list[Finding]:
    """One line per requirement, for the domain; ``findings`` are the domain's and the addresses'."""
    spf = _worst(findings, {"spf"}, {domain})
    dkim = _worst([f for f in findings if f.subject.split(" ")[0] == domain], {"dkim"})
    dmarc = _worst(findings, {"dmarc"}, {domain})
    dmarc = Level.OK if dmarc is Level.WARN else dmarc  # p=none is enough for bulk senders
    rdns = _worst(findings, {"fcrdns"}, set(ips))
    aligned = Level.OK if any(_is_alignment(f, domain) for f in findings) else Level.FAIL
    both = max(spf, dkim, key=[Level.OK, Level.WARN, Level.FAIL].index)
    out = [
        _line("gmail/yahoo", domain, both, "SPF and DKIM both set up (bulk senders: both; everyone: one)"),
        _line("gmail/yahoo", domain, dmarc, "a DMARC record, at least p=none (bulk senders)"),
        _line("gmail/yahoo", domain, aligned, "From aligned with SPF or DKIM (DMARC alignment)"),
        _line("gmail/yahoo", domain, rdns, "sending addresses with forward-confirmed reverse DNS"),
        warn(
            "gmail/yahoo",
            domain,
            "bulk mail needs one-click unsubscribe (RFC 8058 List-Unsubscribe-Post) added by the sending "
            "application, and a spam rate under 0.3 % (Postmaster Tools): Postier cannot check these",
        ),
    ]
    return out
