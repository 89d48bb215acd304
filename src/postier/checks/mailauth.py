"""The ``mailauth`` check: SPF at MAIL FROM, then DKIM, ARC and DMARC at the end of data, and the
Authentication-Results field (docs/mailauth.md, docs/flow.md).

Theory of operation:

- Clients that are ours (trusted networks, authenticated users) are not checked: their mail is ours.
- MAIL: SPF of the sender (of ``postmaster@HELO`` for ``<>``) and of the HELO name, both at once; the
  result waits in ``txn.notes`` for DMARC. ``spf = "enforce"``: a fail is refused (550 5.7.23), a DNS
  failure deferred (451 4.7.24, RFC 7208 §8.6-8.7); anything else goes on.
- End of data: every DKIM signature, the ARC chain and the DMARC policy of each From domain, all at
  once; then DMARC is evaluated (pure) per From domain and the strictest outcome kept. An ARC chain
  that passes, sealed last by a domain of ``arc_trusted_sealers``, excuses a DMARC failure.
  ``dmarc = "enforce"``: a failure under p=reject is refused (550 5.7.1), under p=quarantine marked
  (``X-Postier-Quarantine: dmarc``) or held (``dmarc_quarantine = "hold"``); an unknown policy (DNS
  failure) deferred (451 4.7.1).
- The verdict tags the message with one Authentication-Results field (authserv-id: server.hostname);
  fields that arrived claiming that authserv-id are listed in ``txn.remove_headers`` for the intake to
  drop (RFC 8601 §5), and the one-line summary goes to ``txn.auth_results`` (log line, queue record).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import NamedTuple

from postier.config.mailauth import MailauthConfig
from postier.mail.replies import S
from postier.mailauth.arcverify import ArcResult, check_arc
from postier.mailauth.dkimverify import DkimResult, check_dkim
from postier.mailauth.dmarc import DmarcResult, discover_policy, evaluate_dmarc, from_domains
from postier.mailauth.lookup import RecordLookup
from postier.mailauth.results import (
    MailauthResults,
    Observation,
    authentication_results,
    authserv_id,
    summary,
)
from postier.mailauth.spf import SpfIdentity, SpfResult, check_spf
from postier.policy import (
    ACCEPT,
    Action,
    Client,
    Message,
    Transaction,
    Verdict,
    defer,
    quarantine,
    reject,
    tag,
)
from postier.spool import ReadBudget

__all__ = ["QUARANTINE_HEADER", "MailauthCheck", "Observation"]

QUARANTINE_HEADER = ("X-Postier-Quarantine", "dmarc")
"""Added to a p=quarantine DMARC failure under ``dmarc = "enforce"`` (for a Sieve rule: docs/mailauth.md)."""

_NOTE = "mailauth.spf"


class _SpfNote(NamedTuple):
    """What MAIL leaves for the end of data: the MAIL FROM identity's SPF result and the HELO's."""

    mailfrom: SpfResult
    helo: SpfResult | None


class MailauthCheck:
    name = "mailauth"

    def __init__(
        self,
        config: MailauthConfig,
        lookup: RecordLookup,
        *,
        hostname: str,
        roll: Callable[[], float] = random.random,
        observe: Callable[[Observation], None] | None = None,
        spf_time_limit_s: float = 15.0,
        memory: ReadBudget | None = None,
    ) -> None:
        self.config = config
        self.lookup = lookup
        self.hostname = hostname
        self.roll = roll
        self.observe = observe
        self.spf_time_limit_s = spf_time_limit_s
        self.memory = memory or ReadBudget(config.verify_memory_bytes)
        self.on_failure = "defer" if "enforce" in (config.spf, config.dmarc) else "accept"
        """A crash or a time-out defers the client only when something is enforced."""

    async def on_mail(self, client: Client, txn: Transaction) -> Verdict:
        if client.is_ours or self.config.spf == "off":
            return ACCEPT
        sender = "" if txn.sender is None else str(txn.sender)
        asks = [self._spf(client, sender, SpfIdentity.MAILFROM)]
        if sender:
            asks.append(self._spf(client, "", SpfIdentity.HELO))
        results = await asyncio.gather(*asks)
        mailfrom, helo = results[0], (results[1] if len(results) > 1 else None)
        txn.notes[_NOTE] = _SpfNote(mailfrom, helo)
        why = f"spf={mailfrom.result} {mailfrom.domain or '-'}: {mailfrom.reason}".rstrip(": ")
        if self.config.spf == "enforce":
            if mailfrom.result == "fail":
                return reject(S.SPF_FAIL, why)
            if mailfrom.result == "temperror":
                return defer(S.SPF_TEMPERROR, why)
        return Verdict(Action.ACCEPT, reason=why)

    def _spf(self, client: Client, sender: str, identity: SpfIdentity) -> asyncio.Future[SpfResult]:
        return asyncio.ensure_future(
            check_spf(
                self.lookup,
                client.ip,
                sender=sender,
                helo=client.helo,
                identity=identity,
                receiver=self.hostname,
                time_limit_s=self.spf_time_limit_s,
            )
        )

    async def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        if client.is_ours:
            return ACCEPT
        results = await self._results(txn, message)
        txn.remove_headers.update(
            i
            for i, (name, value) in enumerate(message.headers)
            if name.lower() == "authentication-results" and authserv_id(value) == self.hostname.lower()
        )
        line = summary(results)
        txn.auth_results = line
        header = ("Authentication-Results", authentication_results(self.hostname, results))
        verdict = self._verdict(results.dmarc, results.arc, header, line)
        if self.observe is not None and results.dmarc is not None and results.dmarc.record is not None:
            self.observe(_observation(client, results, verdict))
        return verdict

    async def _verified(self, message: Message) -> tuple[list[DkimResult], ArcResult | None]:
        """DKIM and ARC, on the whole message in memory: a spooled one is read from disk only within
        ``mailauth.verify_memory_bytes`` over all sessions (it waits its turn), never past
        ``verify_max_bytes`` each."""
        c = self.config
        if (c.dkim, c.arc) == ("off", "off") or message.size > c.verify_max_bytes:
            return await self._dkim(None, message.size), await self._arc(None)
        if isinstance(message.content, bytes):  # held in memory already: no new copy
            data = message.content
            dkim, arc = await asyncio.gather(self._dkim(data, message.size), self._arc(data))
            return dkim, arc
        async with self.memory.hold(message.size):
            data = await asyncio.to_thread(lambda: message.data)  # a spooled message, read from disk
            dkim, arc = await asyncio.gather(self._dkim(data, message.size), self._arc(data))
            del data
        return dkim, arc

    async def _results(self, txn: Transaction, message: Message) -> MailauthResults:
        c = self.config
        noted = txn.notes.get(_NOTE)
        spf, helo = noted if isinstance(noted, _SpfNote) else (None, None)
        domains = from_domains(message.get_all("From")) if c.dmarc != "off" else []
        (dkim, arc), answers = await asyncio.gather(
            self._verified(message),
            asyncio.gather(*(discover_policy(self.lookup, d) for d in domains)),
        )
        dmarc = None
        if domains:
            roll = self.roll()
            outcomes = [evaluate_dmarc(a, spf=spf, dkim=dkim, roll=roll) for a in answers]
            dmarc = max(outcomes, key=_severity)
        return MailauthResults(spf, helo, tuple(dkim), dmarc, arc)

    async def _dkim(self, data: bytes | None, size: int) -> list[DkimResult]:
        c = self.config
        if c.dkim == "off":
            return []
        if data is None:
            return [DkimResult("policy", "", reason=f"message of {size} octets not verified")]
        return await check_dkim(
            self.lookup, data, max_signatures=c.dkim_max_signatures, min_rsa_bits=c.dkim_min_rsa_bits
        )

    async def _arc(self, data: bytes | None) -> ArcResult | None:
        if self.config.arc == "off" or data is None:
            return None
        return await check_arc(self.lookup, data, min_rsa_bits=self.config.dkim_min_rsa_bits)

    def _verdict(
        self, dmarc: DmarcResult | None, arc: ArcResult | None, header: tuple[str, str], line: str
    ) -> Verdict:
        if self.config.dmarc != "enforce" or dmarc is None:
            return tag(header, reason=line)
        if dmarc.result == "fail" and dmarc.disposition != "none" and self._vouched(arc):
            return tag(header, reason=f"{line}; excused by trusted ARC sealer {arc.sealers[0]}")  # type: ignore[union-attr]
        why = f"{line}; From {dmarc.from_domain}: {dmarc.reason}"
        if dmarc.result == "temperror" and dmarc.policy in ("", "reject", "quarantine"):
            return defer(S.DMARC_TEMPERROR, why)
        if dmarc.result != "fail":
            return tag(header, reason=line)
        if dmarc.disposition == "reject":
            return reject(S.DMARC_REJECT, why)
        if dmarc.disposition == "quarantine":
            if self.config.dmarc_quarantine == "hold":
                return quarantine(why, header)
            return tag(header, QUARANTINE_HEADER, reason=why)
        return tag(header, reason=line)

    def _vouched(self, arc: ArcResult | None) -> bool:
        trusted = {d.lower().rstrip(".") for d in self.config.arc_trusted_sealers}
        return arc is not None and arc.result == "pass" and bool(arc.sealers) and arc.sealers[0] in trusted


def _observation(client: Client, results: MailauthResults, verdict: Verdict) -> Observation:
    dmarc = results.dmarc
    assert dmarc is not None
    spf = results.spf
    done, override = "none", ""
    if verdict.action is Action.REJECT:
        done = "reject"
    elif verdict.action is Action.QUARANTINE or QUARANTINE_HEADER in verdict.headers:
        done = "quarantine"
    if dmarc.result == "fail" and done != dmarc.disposition:
        override = "trusted_forwarder" if "ARC sealer" in verdict.reason else "local_policy"
    return Observation(client.ip, spf.domain if spf else "", results, done, override)


def _severity(result: DmarcResult) -> int:
    """Which of several From domains' outcomes rules: a failure to refuse or quarantine, then an
    unknown policy, then a failure under p=none, then the rest."""
    if result.result == "fail":
        return {"reject": 5, "quarantine": 4}.get(result.disposition, 2)
    return {"temperror": 3, "permerror": 1}.get(result.result, 0)
