"""What the composition root builds from ``checks``: the feature checks of a configuration (handed to
``policy.build_policy(checks=…)`` at start and on each reload) and the DMARC report task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from postier.checks.dmarcreports import ReportSender, ReportStore
from postier.checks.mailauth import MailauthCheck
from postier.config import Config
from postier.mail.address import Address
from postier.mail.envelope import Envelope
from postier.mailauth.lookup import RecordLookup
from postier.mailauth.results import Observation

__all__ = ["dmarc_report_store", "feature_checks", "start_dmarc_reports"]


def dmarc_report_store(config: Config) -> ReportStore | None:
    """Where checked messages are kept for the reports, with ``mailauth.dmarc_reports``; else None."""
    m = config.mailauth
    if not m.dmarc_reports:
        return None
    return ReportStore(Path(config.server.data_dir) / "dmarc", m.dmarc_report_interval_s)


def feature_checks(
    config: Config, lookup: RecordLookup, *, observe: Callable[[Observation], None] | None = None
) -> list[object]:
    """The checks to ask after the built-in ones: mail authentication, unless every part is off."""
    m = config.mailauth
    if (m.spf, m.dkim, m.dmarc, m.arc) == ("off", "off", "off", "off"):
        return []
    return [MailauthCheck(m, lookup, hostname=config.server.hostname, observe=observe)]


def start_dmarc_reports(
    config: Config,
    store: ReportStore,
    lookup: RecordLookup,
    enqueue: Callable[[Envelope, bytes], object],
    sign: Callable[[bytes], bytes],
) -> asyncio.Task[None]:
    """The task that queues the reports of each ended period (the primary only)."""
    m, hostname = config.mailauth, config.server.hostname
    sender = m.dmarc_report_from or f"postmaster@{_parent(hostname)}"

    async def queue_report(envelope: Envelope, message: bytes) -> str:
        return str(await enqueue(envelope, message))  # type: ignore[misc]

    reports = ReportSender(
        store,
        lookup,
        queue_report,
        hostname=hostname,
        sender=str(Address(*sender.rsplit("@", 1))),
        org_name=m.dmarc_report_org or hostname,
        sign=sign,
    )
    return asyncio.get_running_loop().create_task(reports.run_forever(), name="dmarc-reports")


def _parent(hostname: str) -> str:
    """``mx.example.org`` → ``example.org``: the domain whose postmaster sends the reports."""
    labels = hostname.split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else hostname
