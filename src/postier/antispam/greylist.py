"""Greylisting at RCPT: a triplet never seen before is refused with ``451 4.7.1`` once.

Theory of operation. The triplet is (client network, sender, recipient): the client's IPv4 /24 or
IPv6 /64 (configurable), because a big sender retries from another address of the same pool. A new
triplet is refused; a retry at least ``delay_s`` later (and within ``retry_window_s``) passes, and from
then on the triplet is accepted at once as long as it is seen again within ``ttl_s``. A retry too soon
is refused again without restarting the clock. A client network whose triplets passed
``auto_allow`` times skips greylisting altogether for ``ttl_s`` after its last pass: a real MTA that
retries pays the delay a few times, not for every new correspondent.

Exempt: trusted and authenticated clients, ``exempt_networks``, clients on a DNS allow list
(``DnsblCheck.standing``), and a sender whose domain is in ``exempt_spf_domains`` when the SPF
check's note in the transaction (``txn.notes["mailauth.spf"]``) says pass for that domain.

``decide`` is pure; ``GreylistStore`` keeps the triplets in SQLite beside the queue
(``data_dir/greylist.sqlite``, WAL, ``synchronous=NORMAL``: a power cut may forget the last few
triplets, which only greylists them once more). It is owned by the application and outlives reloads.
Times are wall-clock seconds from an injected ``clock``. A client the DNS lists refuse is not
greylisted either (the ``dnsbl`` check refuses it at the same RCPT): its triplets are never recorded,
so a listed spammer cannot open the way for its /24 neighbours.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.policy import ACCEPT, Client, Transaction, Verdict, defer

__all__ = [
    "GREYLISTED",
    "Entry",
    "GreylistCheck",
    "GreylistSettings",
    "GreylistStore",
    "decide",
    "network_of",
]

GREYLISTED = S.GREYLISTED
SPF_NOTE = "mailauth.spf"
"""Where the mail authentication check (``postier.checks.mailauth``) leaves its SPF result."""


@dataclass(frozen=True, slots=True)
class GreylistSettings:
    delay_s: float = 300.0
    retry_window_s: float = 2 * 86400.0
    ttl_s: float = 36 * 86400.0
    auto_allow: int = 5
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64


@dataclass(frozen=True, slots=True)
class Entry:
    first_seen: float
    last_seen: float
    passed_at: float | None = None


def network_of(ip: str, ipv4_prefix: int = 24, ipv6_prefix: int = 64) -> str:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def decide(entry: Entry | None, now: float, settings: GreylistSettings) -> tuple[bool, Entry, bool]:
    """``(accepted, the entry to store, passed just now)`` for a triplet seen at ``now``."""
    if entry is None or _expired(entry, now, settings):
        return False, Entry(now, now), False
    if entry.passed_at is not None:
        return True, replace(entry, last_seen=now), False
    if now - entry.first_seen >= settings.delay_s:
        return True, replace(entry, last_seen=now, passed_at=now), True
    return False, replace(entry, last_seen=now), False


def _expired(entry: Entry, now: float, settings: GreylistSettings) -> bool:
    if entry.passed_at is None:
        return now - entry.first_seen > settings.retry_window_s
    return now - entry.last_seen > settings.ttl_s


_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplet (
    key TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_seen REAL NOT NULL, passed_at REAL);
CREATE TABLE IF NOT EXISTS client (
    network TEXT PRIMARY KEY, passes INTEGER NOT NULL, last_pass REAL NOT NULL);
"""


class GreylistStore:
    """The triplets and the client networks' pass counts, in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT first_seen, last_seen, passed_at FROM triplet WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else Entry(row[0], row[1], row[2])

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO triplet VALUES (?, ?, ?, ?)",
                (key, entry.first_seen, entry.last_seen, entry.passed_at),
            )

    def passes(self, network: str) -> tuple[int, float]:
        with self._lock:
            row = self._db.execute(
                "SELECT passes, last_pass FROM client WHERE network = ?", (network,)
            ).fetchone()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    def count_pass(self, network: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO client VALUES (?, 1, ?) ON CONFLICT(network) "
                "DO UPDATE SET passes = passes + 1, last_pass = excluded.last_pass",
                (network, now),
            )

    def purge(self, now: float, settings: GreylistSettings) -> int:
        """Forget what has expired; returns the number of triplets removed."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM triplet WHERE (passed_at IS NULL AND first_seen < ?) OR last_seen < ?",
                (now - settings.retry_window_s, now - settings.ttl_s),
            )
            self._db.execute("DELETE FROM client WHERE last_pass < ?", (now - settings.ttl_s,))
            return cursor.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


class GreylistCheck:
    name = "greylist"
    on_failure = "accept"

    def __init__(
        self,
        store: GreylistStore,
        settings: GreylistSettings,
        *,
        clock: Callable[[], float] = time.time,
        standing: Callable[[str], Awaitable[str]] | None = None,
        exempt_networks: Iterable[str] = (),
        exempt_spf_domains: Iterable[str] = (),
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.standing = standing
        self.exempt = tuple(ipaddress.ip_network(n, strict=False) for n in exempt_networks)
        self.spf_domains = frozenset(d.lower().rstrip(".") for d in exempt_spf_domains)

    async def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        exempt = self._exemption(client, txn)
        if exempt:
            return ACCEPT
        if self.standing is not None and await self.standing(client.ip):
            return ACCEPT  # allow-listed; or blocked, which the dnsbl check refuses: nothing recorded
        s, now = self.settings, self.clock()
        network = network_of(client.ip, s.ipv4_prefix, s.ipv6_prefix)
        passes, last_pass = self.store.passes(network)
        if s.auto_allow and passes >= s.auto_allow and now - last_pass <= s.ttl_s:
            return ACCEPT
        sender = "" if txn.sender is None else str(txn.sender).lower()
        key = f"{network} <{sender}> <{str(rcpt.address).lower()}>"
        previous = self.store.get(key)
        accepted, entry, passed = decide(previous, now, s)
        self.store.put(key, entry)
        if passed:
            self.store.count_pass(network, now)
        if accepted:
            return ACCEPT
        wait = max(0.0, entry.first_seen + s.delay_s - now)
        return defer(GREYLISTED, f"greylisted {key}: retry in {wait:.0f}s")

    def _exemption(self, client: Client, txn: Transaction) -> bool:
        if client.is_ours:
            return True
        ip = ipaddress.ip_address(client.ip)
        if any(ip in net for net in self.exempt):
            return True
        if self.spf_domains and txn.sender is not None:
            domain = _spf_pass_domain(txn.notes.get(SPF_NOTE, txn.notes.get("spf")), txn.sender.domain)
            return domain is not None and domain.lower().rstrip(".") in self.spf_domains
        return False


def _spf_pass_domain(note: object, sender_domain: str) -> str | None:
    """The domain SPF passed for, from the mail authentication check's note (``mailfrom``, a result
    with ``result`` and ``domain``) or a plain ``"pass"``; None when SPF did not pass."""
    spf = getattr(note, "mailfrom", note)
    result = getattr(spf, "result", spf)
    if str(getattr(result, "value", result)).lower() != "pass":
        return None
    return str(getattr(spf, "domain", "") or sender_domain)
