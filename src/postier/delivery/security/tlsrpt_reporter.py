"""TLS-RPT (RFC 8460), the running half: results recorded per policy domain and day, reports sent daily.

Theory of operation. ``TlsReporter.record`` subscribes to the mail log: each ``delivery`` event whose
``tls_policy`` is ``dane``, ``mta-sts`` or ``mta-sts-testing`` becomes one line in
``data_dir/tlsrpt/YYYY-MM-DD.jsonl`` (UTC day; appended, not fsync'd: a crash loses a few counts,
never mail). ``send_due`` (run hourly by ``run_forever``) takes each finished day: per policy domain,
``_smtp._tls.DOMAIN`` TXT gives the ``rua`` URIs; the report (``tlsrpt.build_report``) is gzipped and
sent to each — ``mailto:`` by enqueueing a report message from ``tlsrpt.sender`` into our own queue,
``https:`` by a POST (resolved by Postier's resolver, certificate verified). The day's file is then
renamed ``.sent``; a domain without a ``rua`` is skipped. Off unless ``tlsrpt.enabled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from postier.delivery.security.tlsrpt import (
    PolicyResult,
    build_report,
    gzip_report,
    parse_rua,
    report_message,
    result_type,
)
from postier.dns import DnsError, Resolver
from postier.mail.address import Address
from postier.mail.envelope import ClientInfo, Envelope, Recipient
from postier.observe import fields, get_logger
from postier.queue.protocol import Queue

__all__ = ["TlsReporter"]

_log = get_logger("postier.delivery.tlsrpt")
_POLICIES = frozenset({"dane", "mta-sts", "mta-sts-testing"})


class TlsReporter:
    def __init__(
        self,
        directory: Path,
        resolver: Resolver,
        queue: Queue,
        *,
        organization: str,
        contact: str,
        sender: str,
        ca_file: str = "",
        timeout_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        https_port: int = 443,
    ) -> None:
        self._dir = directory
        self._resolver = resolver
        self._queue = queue
        self._organization = organization
        self._contact = contact
        self._sender = sender
        self._context = ssl.create_default_context(cafile=ca_file or None)
        self._timeout_s = timeout_s
        self._clock = clock
        self._https_port = https_port

    def record(self, event: str, values: Mapping[str, object]) -> None:
        """A mail-log subscriber (``observe.maillog.subscribe``)."""
        if event != "delivery" or values.get("tls_policy") not in _POLICIES:
            return
        domain = str(values.get("rcpt", "")).strip("<>").rpartition("@")[2].lower()
        mx = str(values.get("relay", "")).split(" ")[0]
        testing = values.get("tls_failure")  # MTA-STS testing: delivered, but enforce would have failed
        failure = (
            str(testing) if testing else result_type(str(values.get("result")), str(values.get("reply")))
        )
        line = PolicyResult(domain, str(values["tls_policy"]), mx, failure).to_json()
        path = self._dir / f"{self._clock().date().isoformat()}.jsonl"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            _log.warning("cannot record a TLS-RPT result", extra=fields(error=str(exc)))

    async def run_forever(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:
                _log.exception("sending TLS reports failed; will try again")
            await asyncio.sleep(3600)

    async def send_due(self) -> int:
        """Send the reports of every finished day; how many reports went out."""
        today = self._clock().date()
        sent = 0
        for path in sorted(self._dir.glob("*.jsonl")) if self._dir.is_dir() else []:
            day = date.fromisoformat(path.stem)
            if day >= today:
                continue
            by_domain: dict[str, list[PolicyResult]] = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, TypeError):
                    result = PolicyResult.from_json(line)
                    by_domain.setdefault(result.domain, []).append(result)
            for domain, results in sorted(by_domain.items()):
                sent += await self._send(domain, day, results)
            path.rename(path.with_suffix(".sent"))
        return sent

    async def _send(self, domain: str, day: date, results: list[PolicyResult]) -> int:
        try:
            rua = parse_rua(await self._resolver.txt(f"_smtp._tls.{domain}"))
        except DnsError:
            rua = []
        report_id = f"{day:%Y%m%d}.{uuid.uuid4().hex[:16]}@{self._organization}"
        report = build_report(
            domain, day, results, organization=self._organization, contact=self._contact, report_id=report_id
        )
        gz = gzip_report(report)
        sent = 0
        for uri in rua:
            ok = await (
                self._mail(uri, domain, day, report_id, gz)
                if uri.startswith("mailto:")
                else self._post(uri, gz)
            )
            _log.info("TLS report", extra=fields(domain=domain, day=day.isoformat(), to=uri, sent=ok))
            sent += ok
        return sent

    async def _mail(self, uri: str, domain: str, day: date, report_id: str, gz: bytes) -> bool:
        to = unquote(uri.removeprefix("mailto:").split("?")[0])
        local, _, host = to.rpartition("@")
        s_local, _, s_host = self._sender.rpartition("@")
        if not local or not host or not s_local:
            return False
        body = report_message(
            sender=self._sender,
            to=to,
            domain=domain,
            organization=self._organization,
            report_id=report_id,
            day=day,
            gz=gz,
            now=self._clock(),
        )
        envelope = Envelope(
            Address(s_local, s_host), (Recipient(Address(local, host)),), client=ClientInfo(protocol="LOCAL")
        )
        await self._queue.enqueue(envelope, body)
        return True

    async def _post(self, uri: str, gz: bytes) -> bool:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/tlsrpt+gzip\r\n"
            f"Content-Length: {len(gz)}\r\nUser-Agent: Postier\r\nConnection: close\r\n\r\n"
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                address = (await self._resolver.addresses(host))[0]
                reader, writer = await asyncio.open_connection(
                    address, parts.port or self._https_port, ssl=self._context, server_hostname=host
                )
                try:
                    writer.write(head.encode() + gz)
                    status = await reader.readline()
                finally:
                    writer.close()
        except (DnsError, OSError, TimeoutError, ssl.SSLError) as exc:
            _log.warning("TLS report POST failed", extra=fields(to=uri, error=str(exc) or type(exc).__name__))
            return False
        words = status.split()
        return len(words) >= 2 and words[1][:1] == b"2"
