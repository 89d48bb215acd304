"""Greylisting with a fake clock: the pure decision table and the check over the real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postier.antispam.greylist import (
    Entry,
    GreylistCheck,
    GreylistSettings,
    GreylistStore,
    decide,
    network_of,
)
from postier.mail.address import parse_mailbox
from postier.mail.envelope import Recipient
from postier.policy import Action, Client, Transaction

S = GreylistSettings(delay_s=300, retry_window_s=3600, ttl_s=86400, auto_allow=2)

DECISIONS = [
    # (entry, now) -> accepted, entry after, passed now
    (None, 1000.0, False, Entry(1000, 1000), False),
    (Entry(1000, 1000), 1100.0, False, Entry(1000, 1100), False),  # too soon: the clock is not reset
    (Entry(1000, 1100), 1300.0, True, Entry(1000, 1300, 1300), True),  # after the delay: passes
    (Entry(1000, 1300, 1300), 5000.0, True, Entry(1000, 5000, 1300), False),  # passed: accepted at once
    (Entry(1000, 1000), 1000.0 + 3601, False, Entry(4601, 4601), False),  # retry window over: new
    (Entry(1000, 1300, 1300), 1300.0 + 86401, False, Entry(87701, 87701), False),  # ttl over: new
]


@pytest.mark.parametrize(("entry", "now", "accepted", "after", "passed"), DECISIONS)
def test_decide(entry: Entry | None, now: float, accepted: bool, after: Entry, passed: bool) -> None:
    assert decide(entry, now, S) == (accepted, after, passed)


def test_networks() -> None:
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert network_of("192.0.2.77", ipv4_prefix=32) == "192.0.2.77/32"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _client(ip: str = "192.0.2.10", trusted: bool = False) -> Client:
    return Client("sid", ip, 4000, "smtp", is_trusted=trusted)


def _ask(
    check: GreylistCheck, client: Client, sender: str = "a@example.org", rcpt: str = "b@example.test"
) -> Action:
    txn = Transaction(parse_mailbox(sender, allow_utf8=True))
    verdict = asyncio.run(check.on_rcpt(client, txn, Recipient(parse_mailbox(rcpt, allow_utf8=True))))
    return verdict.action


@pytest.fixture
def store(tmp_path: Path) -> GreylistStore:
    return GreylistStore(tmp_path / "greylist.sqlite")


def test_a_new_triplet_is_deferred_then_accepted_after_the_delay(store: GreylistStore) -> None:
    clock = Clock()
    check = GreylistCheck(store, S, clock=clock)
    assert _ask(check, _client()) is Action.DEFER
    clock.now += 299
    assert _ask(check, _client("192.0.2.11")) is Action.DEFER  # same /24, too soon
    clock.now += 1
    assert _ask(check, _client("192.0.2.12")) is Action.ACCEPT  # same /24: the pool retries
    assert _ask(check, _client(), rcpt="other@example.test") is Action.DEFER  # another triplet
    assert _ask(check, _client("198.51.100.1")) is Action.DEFER  # another network


def test_the_store_outlives_the_check(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "greylist.sqlite"
    first = GreylistStore(path)
    assert _ask(GreylistCheck(first, S, clock=clock), _client()) is Action.DEFER
    first.close()
    clock.now += 301
    assert _ask(GreylistCheck(GreylistStore(path), S, clock=clock), _client()) is Action.ACCEPT


def test_a_network_is_auto_allowed_after_n_passes(store: GreylistStore) -> None:
    clock = Clock()
    check = GreylistCheck(store, S, clock=clock)
    for rcpt in ("one@example.test", "two@example.test"):
        assert _ask(check, _client(), rcpt=rcpt) is Action.DEFER
    clock.now += 301
    for rcpt in ("one@example.test", "two@example.test"):
        assert _ask(check, _client(), rcpt=rcpt) is Action.ACCEPT
    assert _ask(check, _client(), rcpt="new@example.test") is Action.ACCEPT  # two passes: allowed
    clock.now += 86401
    assert _ask(check, _client(), rcpt="newer@example.test") is Action.DEFER  # expired


def test_exemptions(store: GreylistStore) -> None:
    async def standing(ip: str) -> str:
        return {"203.0.113.5": "allowed", "203.0.113.6": "blocked"}.get(ip, "")

    check = GreylistCheck(
        store,
        S,
        clock=Clock(),
        standing=standing,
        exempt_networks=["198.51.100.0/24"],
        exempt_spf_domains=["good.example"],
    )
    assert _ask(check, _client(trusted=True)) is Action.ACCEPT
    assert _ask(check, _client("198.51.100.9")) is Action.ACCEPT
    assert _ask(check, _client("203.0.113.5")) is Action.ACCEPT
    assert _ask(check, _client("203.0.113.6")) is Action.ACCEPT  # refused by the dnsbl check instead
    assert store.get("203.0.113.0/24 <a@example.org> <b@example.test>") is None  # nothing recorded
    txn = Transaction(parse_mailbox("news@good.example", allow_utf8=True), notes={"spf": "pass"})
    rcpt = Recipient(parse_mailbox("b@example.test", allow_utf8=True))
    assert asyncio.run(check.on_rcpt(_client(), txn, rcpt)).action is Action.ACCEPT
    txn = Transaction(parse_mailbox("news@good.example", allow_utf8=True), notes={"spf": "softfail"})
    assert asyncio.run(check.on_rcpt(_client(), txn, rcpt)).action is Action.DEFER


def test_purge_forgets_expired_triplets(store: GreylistStore) -> None:
    store.put("old", Entry(0, 0))
    store.put("fresh", Entry(10_000, 10_000))
    assert store.purge(10_000, S) == 1
    assert store.get("old") is None and store.get("fresh") is not None
