"""DnsPythonResolver against a real DNS server on 127.0.0.1 (tests/integration/dnsserver.py)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from postier.dns import (
    DNS_TEMPORARY_FAILURE,
    MX_LOOP,
    NO_SUCH_DOMAIN,
    NULL_MX,
    DnsPythonResolver,
    MxRecord,
    NoData,
    NxDomain,
    TemporaryDnsError,
    resolve_mx,
)
from tests.integration.dnsserver import Dnsmasq, DnsServer, dns_server_factory  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

RECORDS = {
    "example.test": {"MX": ["10 mx-a.example.test", "10 mx-b.example.test", "20 backup.example.test"]},
    "mx-a.example.test": {"A": ["127.0.0.2"]},
    "mx-b.example.test": {"A": ["127.0.0.3"], "AAAA": ["::1"]},
    "backup.example.test": {"AAAA": ["2001:db8::25"]},
    "implicit.test": {"A": ["127.0.0.4"], "TXT": ["v=spf1 -all"]},
    "null.test": {"MX": ["0 ."]},
    "loop.test": {"MX": ["10 mx.them.test", "20 mx.us.test", "30 mx.third.test"]},
    "self.test": {"MX": ["10 mx.us.test"]},
    "alias.test": {"CNAME": ["implicit.test"]},
    "long.test": {"TXT": ["v=DKIM1; k=rsa; p=" + "A" * 400]},
    "big.test": {"TXT": [f"record-{i}-" + "x" * 180 for i in range(12)]},
    "sub.tree.test": {"A": ["127.0.0.5"]},
}


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[DnsServer]:
    with DnsServer(
        RECORDS,
        ttls={("implicit.test", "A"): 60, ("alias.test", "CNAME"): 20},
        soa_minimum=30,
        servfail=["broken.test"],
        refused=["refused.test"],
        drop=["silent.test"],
    ) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver(server: DnsServer, clock: FakeClock) -> DnsPythonResolver:
    return DnsPythonResolver(server.nameservers, timeout_s=0.5, clock=clock)


async def test_mx_records_come_back_as_published(resolver: DnsPythonResolver) -> None:
    assert sorted(await resolver.mx("example.test")) == [
        MxRecord(10, "mx-a.example.test"),
        MxRecord(10, "mx-b.example.test"),
        MxRecord(20, "backup.example.test"),
    ]


async def test_mx_plan_orders_by_preference_and_shuffles_within_one(resolver: DnsPythonResolver) -> None:
    firsts = set()
    for seed in range(20):
        plan = await resolve_mx(resolver, "example.test", random.Random(seed))
        hosts = [r.host for r in plan.hosts]
        assert set(hosts[:2]) == {"mx-a.example.test", "mx-b.example.test"}
        assert hosts[2] == "backup.example.test"
        firsts.add(hosts[0])
    assert firsts == {"mx-a.example.test", "mx-b.example.test"}


@pytest.mark.parametrize(
    ("domain", "hosts", "reply", "is_implicit"),
    [
        ("implicit.test", ("implicit.test",), None, True),  # RFC 5321 §5.1: no MX → the domain itself
        ("null.test", (), NULL_MX, False),  # RFC 7505: 556 5.1.10
        ("nowhere.test", (), NO_SUCH_DOMAIN, False),  # NXDOMAIN: 5.1.2
        ("broken.test", (), DNS_TEMPORARY_FAILURE, False),  # SERVFAIL: 4.4.3
        ("refused.test", (), DNS_TEMPORARY_FAILURE, False),
        ("silent.test", (), DNS_TEMPORARY_FAILURE, False),  # timeout
        ("loop.test", ("mx.them.test",), None, False),  # we are an MX: drop us and worse
        ("self.test", (), MX_LOOP, False),  # we are the best MX: 5.4.6
    ],
)
async def test_mx_plan_decisions(
    resolver: DnsPythonResolver, domain: str, hosts: tuple[str, ...], reply: object, is_implicit: bool
) -> None:
    plan = await resolve_mx(resolver, domain, random.Random(1), local_names=["MX.us.test."])
    assert tuple(r.host for r in plan.hosts) == hosts
    assert plan.reply == reply
    assert plan.is_implicit is is_implicit


@pytest.mark.parametrize(
    ("name", "error", "detail"),
    [
        ("nowhere.test", NxDomain, ""),
        ("implicit.test", NoData, ""),
        ("tree.test", NoData, ""),  # an empty non-terminal exists (RFC 8020)
        ("broken.test", TemporaryDnsError, "SERVFAIL"),
        ("refused.test", TemporaryDnsError, "REFUSED"),
        ("silent.test", TemporaryDnsError, "timeout"),
    ],
)
async def test_mx_lookup_errors_are_typed(
    resolver: DnsPythonResolver, name: str, error: type[Exception], detail: str
) -> None:
    with pytest.raises(error) as info:
        await resolver.mx(name)
    assert type(info.value) is error  # never blurred into a sibling
    assert detail in str(info.value)


async def test_unreachable_server_is_temporary() -> None:
    with DnsServer() as server:
        nameservers = server.nameservers
    resolver = DnsPythonResolver(nameservers, timeout_s=0.3)
    with pytest.raises(TemporaryDnsError):
        await resolver.mx("example.test")


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("mx-a.example.test", ["127.0.0.2"]),
        ("mx-b.example.test", ["127.0.0.3", "::1"]),
        ("backup.example.test", ["2001:db8::25"]),  # AAAA only
        ("alias.test", ["127.0.0.4"]),  # through a CNAME
        ("192.0.2.7", ["192.0.2.7"]),  # an address is its own answer
    ],
)
async def test_addresses_are_a_then_aaaa(
    resolver: DnsPythonResolver, host: str, addresses: list[str]
) -> None:
    assert await resolver.addresses(host) == addresses


@pytest.mark.parametrize(
    ("host", "error"),
    [("nowhere.test", NxDomain), ("null.test", NoData), ("broken.test", TemporaryDnsError)],
)
async def test_address_errors_are_typed(
    resolver: DnsPythonResolver, host: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await resolver.addresses(host)


async def test_txt_strings_are_joined_and_large_answers_come_over_tcp(resolver: DnsPythonResolver) -> None:
    assert await resolver.txt("implicit.test") == ["v=spf1 -all"]
    assert await resolver.txt("long.test") == ["v=DKIM1; k=rsa; p=" + "A" * 400]
    big = await resolver.txt("big.test")  # > 1232 octets: truncated over UDP, retried over TCP
    assert sorted(big) == sorted(RECORDS["big.test"]["TXT"])


async def test_positive_answers_are_cached_for_their_ttl(
    server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock
) -> None:
    assert await resolver.addresses("implicit.test") == ["127.0.0.4"]
    server.set("implicit.test", "A", ["127.0.0.9"])
    clock.now += 59
    assert await resolver.addresses("implicit.test") == ["127.0.0.4"]  # TTL 60: still cached
    assert server.count("implicit.test", "A") == 1
    clock.now += 2
    assert await resolver.addresses("implicit.test") == ["127.0.0.9"]
    assert server.count("implicit.test", "A") == 2


async def test_cname_chain_lives_as_long_as_its_shortest_link(
    server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock
) -> None:
    await resolver.addresses("alias.test")
    clock.now += 19
    await resolver.addresses("alias.test")
    assert server.count("alias.test", "A") == 1
    clock.now += 2  # past the CNAME's 20 s, well within the A record's 60 s
    await resolver.addresses("alias.test")
    assert server.count("alias.test", "A") == 2


@pytest.mark.parametrize(("name", "error"), [("nowhere.test", NxDomain), ("implicit.test", NoData)])
async def test_negative_answers_are_cached_for_the_soa_minimum(
    server: DnsServer, resolver: DnsPythonResolver, clock: FakeClock, name: str, error: type[Exception]
) -> None:
    for _ in range(3):
        with pytest.raises(error):
            await resolver.mx(name)
    assert server.count(name, "MX") == 1
    server.set(name, "MX", ["10 mx-a.example.test"])
    clock.now += 31  # RFC 2308 §5: SOA MINIMUM 30
    assert await resolver.mx(name) == [MxRecord(10, "mx-a.example.test")]
    assert server.count(name, "MX") == 2


async def test_temporary_failures_are_never_cached(server: DnsServer, resolver: DnsPythonResolver) -> None:
    for _ in range(2):
        with pytest.raises(TemporaryDnsError):
            await resolver.mx("broken.test")
    assert server.count("broken.test", "MX") == 2


async def test_fixture_factory_serves_records(
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
) -> None:
    server = dns_server_factory({"f.test": {"MX": ["5 mx.f.test"]}})
    resolver = DnsPythonResolver(server.nameservers, timeout_s=1)
    assert await resolver.mx("f.test") == [MxRecord(5, "mx.f.test")]


DNSMASQ_RECORDS = {
    "example.test": {"MX": ["20 backup.example.test", "10 mx-a.example.test"]},
    "mx-a.example.test": {"A": ["127.0.0.2"], "AAAA": ["::1"]},
    "implicit.test": {"A": ["127.0.0.4"], "TXT": ["v=spf1 -all"]},
    "null.test": {"MX": ["0 ."]},
}


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    with Dnsmasq(DNSMASQ_RECORDS, unreachable=["broken.test"]) as server:
        yield server


@pytest.mark.parametrize(
    ("domain", "hosts", "reply"),
    [
        ("example.test", ("mx-a.example.test", "backup.example.test"), None),
        ("implicit.test", ("implicit.test",), None),
        ("null.test", (), NULL_MX),
        ("nowhere.test", (), NO_SUCH_DOMAIN),
        ("broken.test", (), DNS_TEMPORARY_FAILURE),
    ],
)
async def test_against_dnsmasq(dnsmasq: Dnsmasq, domain: str, hosts: tuple[str, ...], reply: object) -> None:
    resolver = DnsPythonResolver(dnsmasq.nameservers, timeout_s=1)
    plan = await resolve_mx(resolver, domain, random.Random(0))
    assert (tuple(r.host for r in plan.hosts), plan.reply) == (hosts, reply)


async def test_addresses_and_txt_from_dnsmasq(dnsmasq: Dnsmasq) -> None:
    resolver = DnsPythonResolver(dnsmasq.nameservers, timeout_s=1)
    assert await resolver.addresses("mx-a.example.test") == ["127.0.0.2", "::1"]
    assert await resolver.txt("implicit.test") == ["v=spf1 -all"]
    with pytest.raises(NoData):
        await resolver.mx("implicit.test")
    with pytest.raises(NxDomain):
        await resolver.addresses("nowhere.test")
