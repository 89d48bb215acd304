"""SMTP TLS reporting (RFC 8460), the pure half: result kinds, the daily JSON report, the ``rua`` record
and the report message.

Theory of operation. Every delivery attempt under a policy (``tls_policy`` ``dane``, ``mta-sts`` or
``mta-sts-testing`` on its log line) is one *result* for its policy domain (the recipient domain) and
its UTC day: a success when the attempt was delivered or refused after TLS was set up, else a
failure of one of RFC 8460 §4.3's types, read from the reply (``result_type``). ``build_report`` turns
one domain's results of one day into the §4.4 JSON; it goes, gzipped, to every ``rua`` of
``_smtp._tls.DOMAIN TXT "v=TLSRPTv1; rua=mailto:…,https://…"`` (§3): by mail as
``multipart/report; report-type=tlsrpt`` with an ``application/tlsrpt+gzip`` part (§5.3), or by HTTPS
POST (§5.4).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime, make_msgid

__all__ = [
    "PolicyResult",
    "build_report",
    "gzip_report",
    "parse_rua",
    "report_message",
    "result_type",
]

_POLICY_TYPE = {"dane": "tlsa", "mta-sts": "sts", "mta-sts-testing": "sts"}


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One attempt: ``policy`` is the log's ``tls_policy``, ``failure`` None for a success."""

    domain: str
    policy: str
    mx: str
    failure: str | None

    def to_json(self) -> str:
        return json.dumps([self.domain, self.policy, self.mx, self.failure])

    @classmethod
    def from_json(cls, line: str) -> PolicyResult:
        domain, policy, mx, failure = json.loads(line)
        return cls(str(domain), str(policy), str(mx), None if failure is None else str(failure))


def result_type(result: str, reply: str) -> str | None:
    """None for a success (TLS held; what the server then said is not about TLS), else the §4.3 type."""
    text = reply.lower()
    if " 4.7.4 " in f" {text} " or "does not offer starttls" in text:
        return "starttls-not-supported"
    if "dane:" in text:
        return "tlsa-invalid" if "no usable tlsa" in text or "tlsa lookup" in text else "validation-failure"
    if "mta-sts:" in text or "mta-sts policy" in text:
        return "validation-failure"
    if "certificate not verified" in text:
        if "hostname mismatch" in text or "ip address mismatch" in text:
            return "certificate-host-mismatch"
        if "expired" in text:
            return "certificate-expired"
        return "certificate-not-trusted"
    if " 4.7.5 " in f" {text} " or "tls handshake failed" in text:
        return "validation-failure"
    return None


def build_report(
    domain: str,
    day: date,
    results: Sequence[PolicyResult],
    *,
    organization: str,
    contact: str,
    report_id: str,
) -> dict[str, object]:
    """The RFC 8460 §4.4 report of ``domain`` for the UTC ``day``."""
    start = datetime.combine(day, time(0), UTC)
    policies = []
    by_policy: dict[str, list[PolicyResult]] = {}
    for r in results:
        by_policy.setdefault(_POLICY_TYPE.get(r.policy, "no-policy-found"), []).append(r)
    for policy_type, items in sorted(by_policy.items()):
        failures: Counter[tuple[str, str]] = Counter((r.failure, r.mx) for r in items if r.failure)
        policies.append(
            {
                "policy": {"policy-type": policy_type, "policy-domain": domain},
                "summary": {
                    "total-successful-session-count": sum(1 for r in items if r.failure is None),
                    "total-failure-session-count": sum(failures.values()),
                },
                "failure-details": [
                    {"result-type": kind, "receiving-mx-hostname": mx, "failed-session-count": n}
                    for (kind, mx), n in sorted(failures.items())
                ],
            }
        )
    return {
        "organization-name": organization,
        "date-range": {
            "start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end-datetime": (start + timedelta(days=1) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "contact-info": contact,
        "report-id": report_id,
        "policies": policies,
    }


def gzip_report(report: Mapping[str, object]) -> bytes:
    return gzip.compress(json.dumps(report, indent=1).encode(), mtime=0)


def parse_rua(texts: Iterable[str]) -> list[str]:
    """The ``rua`` URIs (mailto: and https:) of the single ``v=TLSRPTv1`` record; [] when there is
    none or more than one (§3)."""
    records = [t for t in texts if t.startswith("v=TLSRPTv1")]
    if len(records) != 1:
        return []
    for part in records[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "rua":
            uris = [u.strip() for u in value.split(",")]
            return [u for u in uris if u.startswith(("mailto:", "https:"))]
    return []


def report_message(
    *,
    sender: str,
    to: str,
    domain: str,
    organization: str,
    report_id: str,
    day: date,
    gz: bytes,
    now: datetime,
) -> bytes:
    """The §5.3 report mail: multipart/report, report-type=tlsrpt, the gzipped JSON attached."""
    boundary = f"tlsrpt-{report_id}"
    name = f"{organization}!{domain}!{day:%Y%m%d}!{day:%Y%m%d}!{report_id}.json.gz"
    encoded = base64.encodebytes(gz).decode().replace("\n", "\r\n")
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: Report Domain: {domain} Submitter: {organization} Report-ID: <{report_id}>",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=organization)}",
        "TLS-Report-Domain: " + domain,
        "TLS-Report-Submitter: " + organization,
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type="tlsrpt"; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"TLS report for {domain} on {day.isoformat()} from {organization} (RFC 8460).",
        "",
        f"--{boundary}",
        f'Content-Type: application/tlsrpt+gzip; name="{name}"',
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="{name}"',
        "",
        encoded.rstrip("\r\n"),
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode()
