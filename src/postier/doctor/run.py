"""``diagnose``: every gathering at once under one deadline, then the pure judgements, in the order
the report shows them (addresses, then each domain, then the certificate and the block lists)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from postier.config.dkim import DkimConfig
from postier.delivery.security.mtasts_fetch import PolicyFetcher
from postier.dns import Resolver
from postier.doctor.answers import Answer, RecordingLookup
from postier.doctor.certificate import judge_certificate
from postier.doctor.dkim import DkimData, gather_dkim, judge_dkim
from postier.doctor.dmarc import DmarcData, gather_dmarc, judge_dmarc
from postier.doctor.dnsbl import Listing, gather_dnsbl, judge_dnsbl
from postier.doctor.findings import Finding, fail
from postier.doctor.hosts import FcrdnsData, MxData, gather_fcrdns, gather_mx, judge_fcrdns, judge_mx
from postier.doctor.mtasts import StsData, gather_sts, judge_sts, judge_tlsrpt
from postier.doctor.providers import judge_providers
from postier.doctor.spf import SpfData, gather_spf, judge_spf
from postier.mailauth.dkim.table import Published, State
from postier.mailauth.lookup import RecordLookup

__all__ = ["Report", "Setup", "diagnose"]


@dataclass(frozen=True, slots=True)
class Setup:
    """What is audited: our domains and sending addresses, and what the configuration says of us."""

    domains: tuple[str, ...]
    ips: tuple[str, ...]
    hostname: str
    helo: str
    dkim: DkimConfig
    data_dir: Path
    now: datetime
    cert_path: str = ""
    cert_pem: bytes | None = None
    roots: bytes = b""
    dnsbl_zones: tuple[str, ...] = ()
    deadline_s: float = 20.0


@dataclass(frozen=True, slots=True)
class Report:
    findings: list[Finding]
    answers: list[Answer] = field(default_factory=list)


class _Gathered:
    """The results of the gathering tasks by key; a task that did not finish in time is missing."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], asyncio.Task[Any]] = {}

    def start(self, kind: str, subject: str, work: Awaitable[Any]) -> None:
        async def run() -> Any:
            return await work

        self.tasks[(kind, subject)] = asyncio.ensure_future(run())

    async def wait(self, deadline_s: float) -> list[Finding]:
        """Waits up to the deadline; one failure finding per task left unfinished (then cancelled)."""
        if not self.tasks:
            return []
        _, pending = await asyncio.wait(self.tasks.values(), timeout=deadline_s)
        late = []
        for (kind, subject), task in self.tasks.items():
            if task in pending:
                task.cancel()
                late.append(fail(kind, subject, f"no answer within the deadline of {deadline_s:g} s"))
        await asyncio.gather(*pending, return_exceptions=True)
        return late

    def get(self, kind: str, subject: str) -> Any:
        task = self.tasks.get((kind, subject))
        if task is None or task.cancelled() or not task.done():
            return None
        return task.result()


async def diagnose(
    setup: Setup, lookup: RecordLookup, fetcher: Callable[[Resolver], PolicyFetcher]
) -> Report:
    recording = RecordingLookup(lookup)
    got = _Gathered()
    for ip in setup.ips:
        got.start("fcrdns", ip, gather_fcrdns(recording, ip))
    sts_fetcher = fetcher(recording)
    for d in setup.domains:
        got.start("mx", d, gather_mx(recording, d))
        got.start("spf", d, gather_spf(recording, d, setup.ips))
        got.start("dmarc", d, gather_dmarc(recording, d))
        got.start("mta-sts", d, gather_sts(recording, sts_fetcher, d))
    got.start("dkim", "keys", gather_dkim(recording, setup.dkim, setup.data_dir, setup.now))
    got.start("dnsbl", "zones", gather_dnsbl(recording, setup.ips, setup.dnsbl_zones))
    late = await got.wait(setup.deadline_s)
    return Report([*late, *_judge(setup, got)], recording.answers)


def _judge(setup: Setup, got: _Gathered) -> list[Finding]:
    out: list[Finding] = []
    for ip in setup.ips:
        fcrdns: FcrdnsData | None = got.get("fcrdns", ip)
        out += judge_fcrdns(fcrdns, setup.hostname, setup.helo) if fcrdns else []
    dkim: DkimData | None = got.get("dkim", "keys")
    for domain in setup.domains:
        mine = _judge_domain(setup, got, domain, dkim)
        out += mine + judge_providers(domain, setup.ips, [*out, *mine])
    out += judge_certificate(
        setup.cert_path or "self-signed", setup.cert_pem, setup.hostname, setup.roots, setup.now
    )
    listings: list[Listing] | None = got.get("dnsbl", "zones")
    out += [judge_dnsbl(listing) for listing in listings or []]
    return out


def _judge_domain(setup: Setup, got: _Gathered, domain: str, dkim: DkimData | None) -> list[Finding]:
    out: list[Finding] = []
    mx: MxData | None = got.get("mx", domain)
    out += judge_mx(mx, setup.hostname, setup.ips) if mx else []
    spf: SpfData | None = got.get("spf", domain)
    out += judge_spf(spf, setup.ips) if spf else []
    out += judge_dkim(domain, dkim) if dkim else []
    spf_aligns = bool(spf and spf.by_ip and all(a.result == "pass" for _, a in spf.by_ip))
    dkim_aligns = bool(dkim) and any(
        s.key.domain == domain and s.state is State.ACTIVE and s.lookup.published is Published.MATCHES
        for s in (dkim.statuses if dkim else ())
    )
    dmarc: DmarcData | None = got.get("dmarc", domain)
    out += judge_dmarc(dmarc, spf_aligns, dkim_aligns) if dmarc else []
    sts: StsData | None = got.get("mta-sts", domain)
    if sts:
        hosts = list(mx.addresses) if mx else []
        out += judge_sts(sts, hosts, setup.hostname) + judge_tlsrpt(sts)
    return out
