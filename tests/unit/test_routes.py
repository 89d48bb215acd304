"""Routing one recipient domain: local (Maildir, LMTP), [[route]] / smarthost, MX and its failures."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from postier.config import parse_config
from postier.delivery.routes import Relay, Router, RoutingTable, lmtp_hop, routes_from_config
from postier.delivery.transport import Credentials, Destination, DestinationKind, Hop, TlsPolicy
from postier.dns import DNS_TEMPORARY_FAILURE, MX_LOOP, NO_SUCH_DOMAIN, NULL_MX, MxRecord
from postier.dns.errors import DnsError, NoData, NxDomain, TemporaryDnsError
from postier.mail.errors import ConfigError
from postier.mail.reply import Reply


class FakeResolver:
    """The ``Resolver`` protocol over a dict: domain → MX records or the typed error to raise."""

    def __init__(self, answers: dict[str, list[MxRecord] | DnsError]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def mx(self, domain: str) -> list[MxRecord]:
        self.asked.append(domain)
        answer = self.answers.get(domain, NxDomain(domain, "MX"))
        if isinstance(answer, DnsError):
            raise answer
        return answer

    async def addresses(self, host: str) -> list[str]:
        raise NoData(host, "A")

    async def txt(self, name: str) -> list[str]:
        raise NoData(name, "TXT")


ANSWERS: dict[str, list[MxRecord] | DnsError] = {
    "two.test": [MxRecord(20, "mx2.two.test"), MxRecord(10, "mx1.two.test")],
    "implicit.test": NoData("implicit.test", "MX"),
    "null.test": [MxRecord(0, ".")],
    "broken.test": TemporaryDnsError("broken.test", "MX", "SERVFAIL"),
    "loop.test": [MxRecord(10, "mx.test")],
    "backup.test": [MxRecord(10, "mx.test"), MxRecord(5, "primary.backup.test")],
}


def router(table: RoutingTable | None = None) -> tuple[Router, FakeResolver]:
    resolver = FakeResolver(ANSWERS)
    table = table or RoutingTable(local_domains=("example.org", "localhost"), local_names=("mx.test",))
    return Router(table, resolver, random.Random(1)), resolver


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("two.test", ("mx:two.test", ("mx1.two.test", "mx2.two.test"))),
        ("implicit.test", ("mx:implicit.test", ("implicit.test",))),
        ("backup.test", ("mx:backup.test", ("primary.backup.test",))),
        ("null.test", NULL_MX),
        ("nowhere.test", NO_SUCH_DOMAIN),
        ("broken.test", DNS_TEMPORARY_FAILURE),
        ("loop.test", MX_LOOP),
    ],
)
async def test_mx_routes(domain: str, expected: tuple[str, tuple[str, ...]] | Reply) -> None:
    r, _ = router()
    got = await r.route(domain)
    if isinstance(expected, Reply):
        assert got == expected
        return
    assert isinstance(got, Destination)
    assert (got.key, tuple(h.host for h in got.hosts)) == expected
    assert got.kind is DestinationKind.MX and got.domain == domain
    assert all(h.port == 25 for h in got.hosts)
    assert got.tls is TlsPolicy.OPPORTUNISTIC and got.credentials is None


async def test_local_domains_go_to_maildir_without_dns() -> None:
    r, resolver = router()
    assert await r.route("example.org") == Destination(
        "maildir:example.org", DestinationKind.MAILDIR, "example.org", ()
    )
    # The bare <Postmaster> has the empty routing key: the first local domain's.
    assert await r.route("") == Destination("maildir:example.org", DestinationKind.MAILDIR, "example.org", ())
    assert resolver.asked == []


async def test_lmtp_for_a_local_domain() -> None:
    table = RoutingTable(
        local_domains=("example.org", "Other.ORG"),
        lmtp={"other.org": "127.0.0.1:2424", "example.org": "unix:/run/dovecot/lmtp"},
    )
    r, _ = router(table)
    got = await r.route("other.org")
    assert isinstance(got, Destination)
    assert (got.kind, got.key, got.hosts) == (
        DestinationKind.LMTP,
        "lmtp:127.0.0.1:2424",
        (Hop("127.0.0.1", 2424),),
    )
    sock = await r.route("example.org")
    assert isinstance(sock, Destination)
    assert sock.hosts == (Hop("/run/dovecot/lmtp", 0, unix_path="/run/dovecot/lmtp"),)


def test_lmtp_hop_default_port() -> None:
    assert lmtp_hop("lmtp.example.org") == Hop("lmtp.example.org", 24)


async def test_transport_map_then_wildcard_then_mx() -> None:
    creds = Credentials("u", "secret", "LOGIN")
    special = Relay("relay.special.test", 2525, TlsPolicy.NONE)
    everything = Relay("smarthost.test", 587, TlsPolicy.VERIFY, credentials=creds)
    r, resolver = router(RoutingTable(relays={"Special.TEST": special, "*": everything}))
    got = await r.route("special.test")
    assert isinstance(got, Destination)
    assert (got.kind, got.key, got.hosts, got.tls) == (
        DestinationKind.RELAY,
        "relay:relay.special.test:2525/none",
        (Hop("relay.special.test", 2525),),
        TlsPolicy.NONE,
    )
    other = await r.route("two.test")
    assert isinstance(other, Destination)
    assert other.key == "relay:u@smarthost.test:587/verify"
    assert other.credentials == creds and other.domain == "two.test"
    assert resolver.asked == []  # a relay needs no MX lookup


async def test_tls_policy_per_domain_and_address_literal() -> None:
    table = RoutingTable(tls=TlsPolicy.NONE, tls_policy={"two.test": TlsPolicy.VERIFY})
    r, _ = router(table)
    got = await r.route("two.test")
    assert isinstance(got, Destination) and got.tls is TlsPolicy.VERIFY
    literal = await r.route("[127.0.0.2]")
    assert isinstance(literal, Destination)
    assert (literal.hosts, literal.tls) == ((Hop("127.0.0.2"),), TlsPolicy.NONE)
    v6 = await r.route("[ipv6:::1]")
    assert isinstance(v6, Destination) and v6.hosts == (Hop("::1"),)


def _config(tmp_path: Path, **sections: Any) -> Any:
    return parse_config({"server": {"hostname": "MX.Example.ORG.", "data_dir": str(tmp_path)}, **sections})


def test_routes_from_config_reads_password_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\nignored\n")
    config = _config(
        tmp_path,
        relay={
            "local_domains": ["example.org"],
            "smarthost": "smtp.provider.test:587",
            "smarthost_username": "me",
            "smarthost_password_file": str(tmp_path / "pw"),
            "smarthost_auth": "login",
        },
        route=[{"domains": ["partner.test"], "host": "10.0.0.1", "tls": "none", "implicit_tls": False}],
        local={"lmtp": {"example.org": "127.0.0.1:24"}},
        delivery={"tls": "required", "tls_policy": {"bank.test": "verify"}},
    )
    table = routes_from_config(config)
    assert table.relays["*"] == Relay(
        "smtp.provider.test", 587, TlsPolicy.VERIFY, False, Credentials("me", "s3cret", "LOGIN")
    )
    assert table.relays["partner.test"] == Relay("10.0.0.1", 25, TlsPolicy.NONE)
    assert table.local_names == ("mx.example.org",)
    assert table.tls is TlsPolicy.REQUIRED and table.tls_policy == {"bank.test": TlsPolicy.VERIFY}
    assert "s3cret" not in repr(table)


def test_a_wildcard_route_wins_over_the_smarthost(tmp_path: Path) -> None:
    config = _config(
        tmp_path, relay={"smarthost": "a.test:25"}, route=[{"domains": ["*"], "host": "b.test:26"}]
    )
    assert routes_from_config(config).relays["*"].host == "b.test"


@pytest.mark.parametrize(
    ("route", "key"),
    [
        ({"domains": ["x.test"], "host": "r.test", "username": "u"}, "route[0].password_file"),
        (
            {"domains": ["x.test"], "host": "r.test", "username": "u", "password_file": "/nonexistent/pw"},
            "route[0].password_file",
        ),
        ({"domains": ["x.test"], "host": "r.test:99999"}, "route[0].host"),
    ],
)
def test_bad_routes_are_config_errors(tmp_path: Path, route: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        routes_from_config(_config(tmp_path, route=[route]))
    assert info.value.path == key


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("delivery", {"retry_base_s": 0}, "delivery.retry_base_s"),
        ("delivery", {"retry_base_s": 600, "retry_cap_s": 300}, "delivery.retry_base_s"),
        ("delivery", {"max_age_s": 0}, "delivery.max_age_s"),
        ("delivery", {"delay_notice_s": -1}, "delivery.delay_notice_s"),
        ("delivery", {"max_connections_per_destination": 0}, "delivery.max_connections_per_destination"),
        ("relay", {"smarthost": "s.test:587", "smarthost_username": "u"}, "relay.smarthost_password_file"),
    ],
)
def test_delivery_config_is_checked_when_loaded(section: str, values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: values})
    assert info.value.path == key
