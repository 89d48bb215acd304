"""What ``postier doctor`` reports: one ``Finding`` per check and subject."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Finding", "Level", "fail", "has_failure", "ok", "warn"]


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    """``check`` (mx, fcrdns, spf, dkim, dmarc, mta-sts, tls-rpt, certificate, dnsbl, gmail, yahoo),
    ``subject`` (a domain, an address, a file), the level, a one-line reason, and the records or
    settings to publish when something must change (zone-file lines or ``[section] key = value``)."""

    check: str
    subject: str
    level: Level
    reason: str
    fix: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "check": self.check,
            "subject": self.subject,
            "level": self.level.value,
            "reason": self.reason,
            "fix": list(self.fix),
        }


def ok(check: str, subject: str, reason: str) -> Finding:
    return Finding(check, subject, Level.OK, reason)


def warn(check: str, subject: str, reason: str, *fix: str) -> Finding:
    return Finding(check, subject, Level.WARN, reason, tuple(fix))


def fail(check: str, subject: str, reason: str, *fix: str) -> Finding:
    return Finding(check, subject, Level.FAIL, reason, tuple(fix))


def has_failure(findings: Iterable[Finding]) -> bool:
    return any(f.level is Level.FAIL for f in findings)
