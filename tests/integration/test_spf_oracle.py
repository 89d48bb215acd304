"""SPF through the real path — ``DnsPythonResolver`` asking a real DNS server on 127.0.0.1 — with pyspf
as a differential oracle: for records hypothesis builds, ``postier.mailauth.spf`` and pyspf, both asking
the same server, must agree on the result."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import dns.resolver
import pytest
import spf as pyspf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.dns import DnsPythonResolver
from postier.mailauth.spf import SpfIdentity, check_spf
from tests.integration.dnsserver import DnsServer

pytestmark = pytest.mark.integration

BASE = {
    "h1.spf.test": {"A": ["192.0.2.1"]},
    "h2.spf.test": {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]},
    "mx.spf.test": {"A": ["192.0.2.3"]},
    "helo.spf.test": {"A": ["192.0.2.9"], "TXT": ["v=spf1 a -all"]},
}
DOMAINS = ["d0.spf.test", "d1.spf.test", "d2.spf.test"]
IPS = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.7", "2001:db8::2", "2001:db8::99"]

mechanism = st.sampled_from(
    [
        "ip4:192.0.2.0/30",
        "ip4:198.51.100.7",
        "ip6:2001:db8::/64",
        "a:h1.spf.test",
        "a:h2.spf.test/24",
        "a:nx.spf.test",
        "mx",
        "mx:d1.spf.test",
        "include:d1.spf.test",
        "include:d2.spf.test",
        "exists:h1.spf.test",
        "exists:%{i}.nx.spf.test",
        "a",
    ]
)
qualifier = st.sampled_from(["", "-", "~", "?", "+"])
term = st.tuples(qualifier, mechanism).map("".join)
ending = st.sampled_from(["", " -all", " ~all", " ?all", " redirect=d2.spf.test", " redirect=nx.spf.test"])
record = st.tuples(st.lists(term, max_size=5), ending).map(lambda t: " ".join(["v=spf1", *t[0]]) + t[1])


KNOWN_DIVERGENCES = (
    # RFC 7208 §4.6.4 counts *terms* whose lookup is void; spftrace counts void *queries*, so a term that
    # repeats a void name already asked in the same evaluation is not counted twice.
    "Void lookup limit",
    # pyspf refuses a record that includes itself before evaluating it; RFC 7208 §5.2 evaluates terms
    # in order (an earlier match wins; the loop itself ends in the 10-term limit, §4.6.4).
    "trivial recursion",
)


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(BASE, ttl=0, soa_minimum=0) as running:
        for d in DOMAINS:
            running.set(d, "MX", ["10 mx.spf.test"])
            running.set(d, "A", ["192.0.2.2"])
        yield running


def _pyspf(server: DnsServer, ip: str, sender: str, helo: str) -> tuple[str, str]:
    """pyspf's verdict, asking ``server`` (pyspf resolves through dnspython's default resolver)."""
    host, port = server.nameservers[0]
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    saved = dns.resolver.default_resolver
    dns.resolver.default_resolver = resolver
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pyspf calls dns.resolver.query()
            result, explanation = pyspf.check2(i=ip, s=sender, h=helo)
    finally:
        dns.resolver.default_resolver = saved
    return str(result), str(explanation)


def _ours(server: DnsServer, ip: str, sender: str, helo: str, identity: SpfIdentity) -> str:
    async def run() -> str:
        resolver = DnsPythonResolver(server.nameservers, timeout_s=5.0)
        result = await check_spf(resolver, ip, sender=sender, helo=helo, identity=identity)
        return result.result

    return asyncio.run(run())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(record, min_size=3, max_size=3), ip=st.sampled_from(IPS))
def test_agrees_with_pyspf(server: DnsServer, records: list[str], ip: str) -> None:
    for domain, text in zip(DOMAINS, records, strict=True):
        server.set(domain, "TXT", [text])
    sender = f"someone@{DOMAINS[0]}"
    ours = _ours(server, ip, sender, "helo.spf.test", SpfIdentity.MAILFROM)
    theirs, why = _pyspf(server, ip, sender, "helo.spf.test")
    if theirs == "permerror" and any(known in why for known in KNOWN_DIVERGENCES):
        return
    assert ours == theirs, f"records={records} ip={ip}"


@pytest.mark.parametrize(("ip", "expected"), [("192.0.2.9", "pass"), ("192.0.2.1", "fail")])
def test_helo_identity(server: DnsServer, ip: str, expected: str) -> None:
    assert _ours(server, ip, "x@d0.spf.test", "helo.spf.test", SpfIdentity.HELO) == expected
    assert _ours(server, ip, "", "helo.spf.test", SpfIdentity.MAILFROM) == expected  # <>: postmaster@HELO


def test_dns_failure_is_temperror() -> None:
    with DnsServer({}, servfail=["broken.spf.test"]) as failing:
        assert _ours(failing, "192.0.2.1", "a@broken.spf.test", "h", SpfIdentity.MAILFROM) == "temperror"
