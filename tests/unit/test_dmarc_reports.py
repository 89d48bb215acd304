"""DMARC aggregate reports: rows kept per period, one report per domain queued to each authorized rua,
and the report read back by a DMARC report parser (parsedmarc)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import parsedmarc
from mailauthzone import ZoneLookup

from postier.checks.dmarcreports import ReportSender, ReportStore
from postier.mail.envelope import Envelope
from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.dmarc import PolicyAnswer, evaluate_dmarc, parse_record
from postier.mailauth.results import MailauthResults, Observation
from postier.mailauth.spf import SpfIdentity, SpfResult

DAY = 86400
ZONE = {"example.com._report._dmarc.reports.example.net": {"TXT": ["v=DMARC1"]}}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _seen(record: str, ip: str, dkim_result: str, from_domain: str = "example.com") -> Observation:
    parsed = parse_record(record)
    assert parsed is not None
    dkim = (DkimResult(dkim_result, "example.com", "s1", "rsa-sha256"),)
    spf = SpfResult("fail", SpfIdentity.MAILFROM, "bounce.example.org", "x@bounce.example.org")
    dmarc = evaluate_dmarc(PolicyAnswer(from_domain, parsed, "example.com"), spf=spf, dkim=dkim)
    return Observation(ip, "bounce.example.org", MailauthResults(spf=spf, dkim=dkim, dmarc=dmarc))


async def test_a_day_of_results_becomes_one_report_per_authorized_rua(tmp_path: Path) -> None:
    clock = Clock(20 * DAY + 100)
    store = ReportStore(tmp_path / "dmarc", DAY, clock)
    record = (
        "v=DMARC1; p=reject; rua=mailto:d@example.com,mailto:agg@reports.example.net,mailto:x@other.example"
    )
    for _ in range(3):
        store.add(_seen(record, "192.0.2.1", "pass"))
    store.add(_seen(record, "198.51.100.9", "fail"))
    store.add(_seen("v=DMARC1; p=none", "192.0.2.1", "pass"))  # no rua: nothing kept
    queued: list[tuple[Envelope, bytes]] = []

    async def enqueue(envelope: Envelope, message: bytes) -> str:
        queued.append((envelope, message))
        return f"Q{len(queued)}"

    sender = ReportSender(
        store,
        ZoneLookup(ZONE),
        enqueue,
        hostname="mx.example.test",
        sender="dmarc@example.test",
        org_name="Test",
    )
    assert await sender.send_due() == 0  # the day is not over
    clock.now += DAY
    assert await sender.send_due() == 2  # other.example does not authorize reports for example.com
    assert [str(e.recipients[0].address) for e, _ in queued] == ["d@example.com", "agg@reports.example.net"]
    assert store.due() == []

    message = email.message_from_bytes(queued[0][1], policy=email.policy.default)
    assert message["Subject"].startswith("Report Domain: example.com Submitter: mx.example.test Report-ID: <")
    (part,) = [p for p in message.iter_attachments()]
    assert part.get_filename() == f"mx.example.test!example.com!{20 * DAY}!{21 * DAY - 1}.xml.gz"
    report = parsedmarc.parse_report_file(part.get_content(), offline=True)
    assert report["report_type"] == "aggregate"
    parsed = report["report"]
    assert parsed["policy_published"]["domain"] == "example.com"
    assert parsed["policy_published"]["p"] == "reject"
    rows = sorted(
        (r["source"]["ip_address"], r["count"], r["policy_evaluated"]["dkim"]) for r in parsed["records"]
    )
    assert rows == [("192.0.2.1", 3, "pass"), ("198.51.100.9", 1, "fail")]
