"""DNS block and allow lists (DNSBL / DNSWL), scored as postscreen does.

Theory of operation. Each configured zone has a ``weight`` (negative for an allow list) and the
answers that count (``codes``; none given: any ``127.0.0.0/8`` answer). At connect, every zone is asked
at once for the client's address (``2.0.0.127.zone`` for 127.0.0.2; 32 reversed nibbles for IPv6,
RFC 5782 §2.4) under one deadline; a zone that has not answered by then, or answered SERVFAIL, counts
nothing. An answer in ``127.255.255.0/24`` is the list operator saying "query refused" (too many
queries, or a public resolver): it is logged and ignored, never counted. The score is the sum of the
weights of the zones that list the client.

The connect stage only looks the client up and logs a listed client (``event=verdict check=dnsbl``).
The refusal comes at RCPT, as postscreen's default (``postscreen_dnsbl_action``, with
``smtpd_delay_reject``): ``554 5.7.1 Service unavailable; client [IP] blocked using ZONE``, after the
sender and the recipient are on the log. By then the answers are in the resolver's cache, which keeps
each one for its TTL (``dns/cache.py``), so RCPT asks the DNS nothing new.

``evaluate`` is pure; ``DnsblCheck`` does the lookups through an injected resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postier.dns.errors import DnsError, TemporaryDnsError
from postier.mail.envelope import Recipient
from postier.mail.replies import dnsbl_blocked
from postier.policy import ACCEPT, Action, Client, Transaction, Verdict, reject

__all__ = ["DnsblCheck", "DnsblResult", "Zone", "evaluate", "query_name"]

_log = logging.getLogger("postier.antispam")
_REFUSED = ipaddress.ip_network("127.255.255.0/24")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class ZoneResolver(Protocol):
    async def records(self, name: str, rdtype: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Zone:
    zone: str
    weight: float = 1.0
    codes: frozenset[str] = frozenset()
    """The A answers that count; empty: any ``127.0.0.0/8`` answer (but ``127.255.255.x``)."""

    def counts(self, answer: str) -> bool:
        if self.codes:
            return answer in self.codes
        try:
            return ipaddress.ip_address(answer) in _LOOPBACK
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class DnsblResult:
    score: float = 0.0
    listed: tuple[tuple[str, float, tuple[str, ...]], ...] = ()
    """``(zone, weight, answers)`` for each zone that lists the client, in configured order."""
    refused: tuple[tuple[str, str], ...] = ()
    """``(zone, answer)``: the operator refused the query (``127.255.255.x``)."""
    unanswered: tuple[str, ...] = field(default=())
    """Zones that gave no answer in time or failed."""

    @property
    def blocking_zone(self) -> str:
        """The block list named in the refusal: the listing zone of the highest weight."""
        blocks = [(weight, zone) for zone, weight, _ in self.listed if weight > 0]
        return max(blocks, key=lambda b: b[0])[1] if blocks else ""

    def describe(self) -> str:
        parts = [f"{zone}={weight:g} ({' '.join(answers)})" for zone, weight, answers in self.listed]
        parts += [f"{zone} refused the query ({answer}), ignored" for zone, answer in self.refused]
        parts += [f"{zone} no answer" for zone in self.unanswered]
        return f"score {self.score:g}: " + ", ".join(parts)


def query_name(ip: str, zone: str) -> str:
    """RFC 5782 §2.1 (IPv4: octets reversed) and §2.4 (IPv6: 32 nibbles reversed)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        labels = reversed(str(address).split("."))
    else:
        labels = reversed(address.exploded.replace(":", ""))
    return ".".join(labels) + "." + zone.strip(".")


def evaluate(zones: Sequence[Zone], answers: Sequence[Sequence[str] | None]) -> DnsblResult:
    """The score from each zone's A answers (``[]``: not listed; None: no answer in time)."""
    score, listed, refused, unanswered = 0.0, [], [], []
    for zone, found in zip(zones, answers, strict=True):
        if found is None:
            unanswered.append(zone.zone)
            continue
        counted = []
        for answer in found:
            if _is_refusal(answer):
                refused.append((zone.zone, answer))
            elif zone.counts(answer):
                counted.append(answer)
        if counted:
            score += zone.weight
            listed.append((zone.zone, zone.weight, tuple(counted)))
    return DnsblResult(score, tuple(listed), tuple(refused), tuple(unanswered))


def _is_refusal(answer: str) -> bool:
    try:
        return ipaddress.ip_address(answer) in _REFUSED
    except ValueError:
        return False


class DnsblCheck:
    """``on_connect`` looks the client up and logs it; ``on_rcpt`` refuses a client whose score is at
    or above ``threshold``. Trusted and authenticated clients are never looked up."""

    name = "dnsbl"
    on_failure = "accept"

    def __init__(
        self, resolver: ZoneResolver, zones: Iterable[Zone], *, threshold: float, timeout_s: float
    ) -> None:
        self.resolver = resolver
        self.zones = tuple(zones)
        self.threshold = threshold
        self.timeout_s = timeout_s

    async def lookup(self, ip: str) -> DnsblResult:
        """Every zone at once, under one deadline."""
        if not self.zones:
            return DnsblResult()
        tasks = [asyncio.ensure_future(self._ask(query_name(ip, z.zone))) for z in self.zones]
        _done, pending = await asyncio.wait(tasks, timeout=self.timeout_s)
        for task in pending:
            task.cancel()
        answers = [None if task in pending else task.result() for task in tasks]
        result = evaluate(self.zones, answers)
        for zone, answer in result.refused:
            _log.warning("dnsbl %s refused the query for %s (%s): answer ignored", zone, ip, answer)
        return result

    async def _ask(self, name: str) -> list[str] | None:
        try:
            return await self.resolver.records(name, "A")
        except TemporaryDnsError:
            return None
        except DnsError:  # NXDOMAIN, no A record: not listed
            return []

    async def standing(self, ip: str) -> str:
        """``"allowed"`` (an allow list lists the client), ``"blocked"`` (its score refuses it) or ``""``."""
        result = await self.lookup(ip)
        if result.score >= self.threshold and result.blocking_zone:
            return "blocked"
        return "allowed" if any(weight < 0 for _zone, weight, _ in result.listed) else ""

    async def on_connect(self, client: Client) -> Verdict:
        if client.is_ours:
            return ACCEPT
        result = await self.lookup(client.ip)
        if not (result.listed or result.refused):
            return ACCEPT
        return Verdict(Action.ACCEPT, reason=result.describe())

    async def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        if client.is_ours:
            return ACCEPT
        result = await self.lookup(client.ip)
        if result.score < self.threshold or not result.blocking_zone:
            return ACCEPT
        return reject(dnsbl_blocked(client.ip, result.blocking_zone), result.describe())
