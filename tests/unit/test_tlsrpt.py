"""TLS-RPT (RFC 8460): result types from replies, the §4.4 report, the rua record, the report mail."""

from __future__ import annotations

import email
import gzip
import json
from datetime import UTC, date, datetime

import pytest

from postier.delivery.security.tlsrpt import (
    PolicyResult,
    build_report,
    gzip_report,
    parse_rua,
    report_message,
    result_type,
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("250 2.0.0 Ok", None),
        ("550 5.1.1 No such user", None),
        (
            "451 4.7.4 TLS is required, but the remote server does not offer STARTTLS",
            "starttls-not-supported",
        ),
        (
            "421 4.7.5 Server certificate not verified: Hostname mismatch, certificate is not valid",
            "certificate-host-mismatch",
        ),
        ("421 4.7.5 Server certificate not verified: certificate has expired", "certificate-expired"),
        (
            "421 4.7.5 Server certificate not verified: unable to get local issuer certificate",
            "certificate-not-trusted",
        ),
        ("421 4.7.5 DANE: no DANE-EE record matches the server's certificate", "validation-failure"),
        ("451 4.7.5 DANE: no usable TLSA record (mx.test)", "tlsa-invalid"),
        ("451 4.7.5 MTA-STS: rogue.test is not an MX host the policy of d.test names", "validation-failure"),
        ("421 4.7.5 TLS handshake failed", "validation-failure"),
    ],
)
def test_result_type(reply: str, expected: str | None) -> None:
    assert result_type("deferred", reply) == expected


def test_build_report_counts_per_policy_type() -> None:
    results = [
        PolicyResult("d.test", "mta-sts", "mx1.d.test", None),
        PolicyResult("d.test", "mta-sts", "mx1.d.test", None),
        PolicyResult("d.test", "mta-sts", "mx2.d.test", "starttls-not-supported"),
        PolicyResult("d.test", "dane", "mx3.d.test", "validation-failure"),
    ]
    report = build_report(
        "d.test",
        date(2026, 12, 7),
        results,
        organization="mx.test",
        contact="mailto:p@mx.test",
        report_id="r1",
    )
    assert report["date-range"] == {
        "start-datetime": "2026-12-07T00:00:00Z",
        "end-datetime": "2026-12-07T23:59:59Z",
    }
    sts, tlsa = sorted(report["policies"], key=lambda p: p["policy"]["policy-type"])  # type: ignore[arg-type,index]
    assert sts["policy"] == {"policy-type": "sts", "policy-domain": "d.test"}
    assert sts["summary"] == {"total-successful-session-count": 2, "total-failure-session-count": 1}
    assert sts["failure-details"] == [
        {
            "result-type": "starttls-not-supported",
            "receiving-mx-hostname": "mx2.d.test",
            "failed-session-count": 1,
        }
    ]
    assert tlsa["summary"]["total-failure-session-count"] == 1
    assert json.loads(gzip.decompress(gzip_report(report))) == report


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (
            ["v=TLSRPTv1; rua=mailto:tls@d.test,https://r.d.test/x"],
            ["mailto:tls@d.test", "https://r.d.test/x"],
        ),
        (["v=TLSRPTv1;rua=mailto:a@d.test, ftp://x"], ["mailto:a@d.test"]),
        (["v=TLSRPTv1; rua=mailto:a@d.test", "v=TLSRPTv1; rua=mailto:b@d.test"], []),
        (["v=spf1 -all"], []),
    ],
)
def test_parse_rua(texts: list[str], expected: list[str]) -> None:
    assert parse_rua(texts) == expected


def test_report_message_is_multipart_report_with_the_gzip() -> None:
    gz = gzip_report({"report-id": "r1"})
    raw = report_message(
        sender="postmaster@mx.test",
        to="tls@d.test",
        domain="d.test",
        organization="mx.test",
        report_id="r1",
        day=date(2026, 12, 7),
        gz=gz,
        now=datetime(2026, 12, 8, tzinfo=UTC),
    )
    message = email.message_from_bytes(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == "d.test"
    [attachment] = [p for p in message.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert attachment.get_payload(decode=True) == gz
    assert attachment.get_filename() == "mx.test!d.test!20261207!20261207!r1.json.gz"
