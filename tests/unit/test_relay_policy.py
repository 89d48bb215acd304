"""Relay access at RCPT: local domains from anyone; other domains only for trusted or authenticated
clients. The classic open-relay tricks must not make a remote address look local."""

from __future__ import annotations

import pytest

from postier.mail.address import Address
from postier.policy.relay import RelayPolicy

POLICY = RelayPolicy.build(["example.test", "bücher.test"], ["192.0.2.0/24", "2001:db8::/32"])
STRANGER = "198.51.100.9"


@pytest.mark.parametrize(
    "address",
    [
        Address("bob", "example.test"),
        Address("bob", "EXAMPLE.Test"),
        Address("bob", "example.test."),
        Address("bob", "bücher.test"),
        Address("bob", "xn--bcher-kva.test"),
    ],
)
def test_local_recipients_are_accepted_from_anyone(address: Address) -> None:
    assert POLICY.check_rcpt(address, client_ip=STRANGER, authenticated=False) is None


@pytest.mark.parametrize(
    "address",
    [
        Address("user", "remote.example"),
        Address("user", "[192.0.2.1]"),  # address literals are never local
        Address("user", "example.test.evil.example"),
        Address("user", "evilexample.test"),
        Address("user", "bucher.test"),  # a look-alike of the IDN local domain
        Address("user%remote.example", "example.test"),  # sender-specified routing
        Address('"user@remote.example"', "example.test"),
        Address("remote.example!user", "example.test"),
    ],
)
def test_relay_is_refused_for_strangers(address: Address) -> None:
    reply = POLICY.check_rcpt(address, client_ip=STRANGER, authenticated=False)
    assert reply is not None
    assert (reply.code, str(reply.status)) == (554, "5.7.1")


@pytest.mark.parametrize("ip", ["192.0.2.55", "2001:db8::7", "::ffff:192.0.2.9"])
def test_trusted_networks_relay(ip: str) -> None:
    assert POLICY.check_rcpt(Address("user", "remote.example"), client_ip=ip, authenticated=False) is None


def test_authenticated_clients_relay() -> None:
    assert POLICY.check_rcpt(Address("u", "remote.example"), client_ip=STRANGER, authenticated=True) is None


def test_garbage_ip_is_not_trusted() -> None:
    assert not POLICY.is_trusted("not-an-ip")


def test_is_trusted_answers_stay_right_past_the_cache_bound_and_per_policy() -> None:
    policy = RelayPolicy.build(["example.test"], ["10.0.0.0/9"])
    for _ in range(2):  # the second pass reads what the first one cached (and emptied on the way)
        for n in range(6000):
            ip = f"10.{n % 256}.{n // 256}.1"  # 10.0–127.x.x.x trusted, 10.128–255.x.x.x not
            assert policy.is_trusted(ip) is (n % 256 < 128), ip
    assert policy.is_trusted("10.1.2.3")
    reloaded = RelayPolicy.build(["example.test"], ["192.0.2.0/24"])  # a reload builds a new policy
    assert not reloaded.is_trusted("10.1.2.3") and reloaded.is_trusted("192.0.2.9")
    assert policy == RelayPolicy.build(["example.test"], ["10.0.0.0/9"])  # the cache is not compared
