"""DMARC aggregate reports (RFC 7489 §7.2): results kept per period, one report per domain mailed to
its ``rua`` addresses once the period is over (``[mailauth] dmarc_reports``, docs/mailauth.md).

Theory of operation:

- ``ReportStore.add`` appends one JSON line per checked message whose From domain publishes a DMARC
  record with a ``rua=`` to ``data_dir/dmarc/PERIOD-START.jsonl`` (periods of
  ``dmarc_report_interval_s``, aligned on the epoch: UTC days by default). Appends are whole lines
  with O_APPEND, so receiving workers may share the files.
- ``ReportSender.send_due`` (the primary, once per period and at start) takes every file of a period
  that has ended, builds one gzip'd XML report per policy domain (``mailauth.dmarc.aggregate``), and
  queues one message per ``mailto:`` destination. A destination outside the policy domain's
  organizational domain receives it only when it publishes ``POLICY-DOMAIN._report._dmarc.DEST-DOMAIN``
  TXT ``v=DMARC1`` (§7.1); a report larger than the destination's ``!size`` is not sent. The file is
  deleted once its reports are queued (a crash in between may send a period twice, never lose one).
- Failure reports (ruf) are not sent.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from postier.dns import TemporaryDnsError
from postier.mail.address import Address
from postier.mail.envelope import ClientInfo, Envelope, Recipient
from postier.mailauth.dmarc.aggregate import ReportMeta, ReportRow, build_report, gzip_report, report_filename
from postier.mailauth.dmarc.record import parse_uris
from postier.mailauth.lookup import RecordLookup, txt_or_none
from postier.mailauth.orgdomain import org_domain
from postier.mailauth.results import Observation
from postier.observe import get_logger, mail_event

__all__ = ["ReportSender", "ReportStore", "report_row"]

_log = get_logger("postier.dmarc")


def report_row(seen: Observation) -> ReportRow | None:
    """What a report keeps of one checked message; None when its domain asks for no report."""
    r = seen.results
    dmarc = r.dmarc
    if dmarc is None or dmarc.record is None or not dmarc.record.rua:
        return None
    record = dmarc.record
    spf = r.spf
    override = ""
    if dmarc.result == "fail" and dmarc.disposition != dmarc.policy:
        override = "sampled_out"
    published = (
        ("adkim", record.adkim),
        ("aspf", record.aspf),
        ("p", record.p),
        ("sp", record.sp),
        ("pct", str(record.pct)),
        ("np", record.np),
    )
    return ReportRow(
        policy_domain=dmarc.policy_domain,
        header_from=dmarc.from_domain,
        source_ip=seen.source_ip,
        envelope_from=seen.envelope_from,
        disposition=seen.disposition or dmarc.disposition,
        dkim="pass" if dmarc.dkim_domain else "fail",
        spf="pass" if dmarc.spf_aligned else "fail",
        override=seen.override or override,
        auth_dkim=tuple((d.domain, d.selector, d.result) for d in r.dkim),
        auth_spf=(spf.domain, "helo" if spf.identity == "helo" else "mfrom", spf.result)
        if spf
        else ("", "mfrom", "none"),
        published=published,
        rua=tuple(u.uri + (f"!{u.max_bytes}" if u.max_bytes else "") for u in record.rua),
    )


class ReportStore:
    def __init__(self, directory: Path, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.interval_s = int(interval_s)
        self.clock = clock

    def period_of(self, at: float) -> int:
        return int(at) // self.interval_s * self.interval_s

    def add(self, seen: Observation) -> None:
        row = report_row(seen)
        if row is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.period_of(self.clock())}.jsonl"
        line = (row.to_json() + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def due(self) -> list[tuple[int, Path]]:
        """Files of periods that have ended, oldest first."""
        current = self.period_of(self.clock())
        found = []
        for path in self.directory.glob("*.jsonl"):
            if path.stem.isdigit() and int(path.stem) < current:
                found.append((int(path.stem), path))
        return sorted(found)


Enqueue = Callable[[Envelope, bytes], Awaitable[str]]


class ReportSender:
    def __init__(
        self,
        store: ReportStore,
        lookup: RecordLookup,
        enqueue: Enqueue,
        *,
        hostname: str,
        sender: str,
        org_name: str,
        sign: Callable[[bytes], bytes] = lambda message: b"",
    ) -> None:
        self.store = store
        self.lookup = lookup
        self.enqueue = enqueue
        self.hostname = hostname
        self.sender = sender
        self.org_name = org_name
        self.sign = sign

    async def run_forever(self, check_every_s: float = 3600.0) -> None:
        """Send what is due now and then every ``check_every_s`` (a period's reports go out within
        that time of its end)."""
        while True:
            try:
                await self.send_due()
            except Exception:
                _log.exception("sending DMARC reports failed; will try again")
            await asyncio.sleep(check_every_s)

    async def send_due(self) -> int:
        """Queue the reports of every ended period; returns how many messages were queued."""
        sent = 0
        for begin, path in self.store.due():
            rows = [ReportRow.from_json(line) for line in path.read_text().splitlines() if line.strip()]
            by_domain: dict[str, list[ReportRow]] = defaultdict(list)
            for row in rows:
                by_domain[row.policy_domain].append(row)
            for domain, domain_rows in sorted(by_domain.items()):
                sent += await self._send(domain, domain_rows, begin, begin + self.store.interval_s - 1)
            path.unlink()
        return sent

    async def _send(self, domain: str, rows: list[ReportRow], begin: int, end: int) -> int:
        meta = ReportMeta(self.org_name, self.sender, f"{begin}.{uuid.uuid4().hex[:12]}", begin, end)
        attachment = gzip_report(build_report(meta, domain, rows))
        sent = 0
        for uri in parse_uris(",".join(rows[-1].rua)):
            address = uri.mailto
            if address is None or not await self._authorized(domain, address):
                continue
            if uri.max_bytes is not None and len(attachment) > uri.max_bytes:
                _log.warning("DMARC report for %s too large for %s", domain, uri.uri)
                continue
            message = self._message(domain, address, meta, attachment)
            queue_id = await self.enqueue(self._envelope(address), self.sign(message) + message)
            mail_event("dmarc_report", id=queue_id, domain=domain, to=f"<{address}>", rows=len(rows))
            sent += 1
        return sent

    async def _authorized(self, domain: str, address: str) -> bool:
        """RFC 7489 §7.1: a destination outside the policy domain's organization must agree."""
        target = address.rpartition("@")[2].lower()
        if org_domain(target) == org_domain(domain):
            return True
        try:
            records = await txt_or_none(self.lookup, f"{domain}._report._dmarc.{target}")
        except TemporaryDnsError:
            _log.warning("DMARC report for %s to %s: authorization lookup failed", domain, address)
            return False
        if not any(r.strip().startswith("v=DMARC1") for r in records):
            _log.info("DMARC report for %s: %s does not accept it (no _report._dmarc record)", domain, target)
            return False
        return True

    def _envelope(self, address: str) -> Envelope:
        local, _, dom = self.sender.rpartition("@")
        to_local, _, to_domain = address.rpartition("@")
        return Envelope(
            sender=Address(local, dom),
            recipients=(Recipient(Address(to_local, to_domain)),),
            client=ClientInfo(helo=self.hostname, protocol="LOCAL"),
        )

    def _message(self, domain: str, address: str, meta: ReportMeta, attachment: bytes) -> bytes:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = address
        message["Subject"] = (
            f"Report Domain: {domain} Submitter: {self.hostname} Report-ID: <{meta.report_id}>"
        )
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=self.hostname)
        message.set_content(f"DMARC aggregate report for {domain} from {self.hostname}.\n")
        message.add_attachment(
            attachment,
            maintype="application",
            subtype="gzip",
            filename=report_filename(self.hostname, domain, meta),
        )
        return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
