"""``postier doctor`` against the test DNS responder: a correct domain passes, each broken setup gives
its one failing finding with the fix, and the ``--records`` snippet of a fresh domain, loaded into
the responder, passes (docs/doctor.md)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.zone
import pytest
import trustme

from postier.config.dkim import DkimConfig
from postier.delivery.security.mtasts import Broken
from postier.dns import DnsPythonResolver
from postier.doctor.findings import Finding, Level
from postier.doctor.run import Report, Setup, diagnose
from postier.mailauth.dkim import key_root
from postier.mailauth.dkim.keys import generate_key, public_record
from postier.mailauth.dkim.keystore import KeyFile, write_key
from tests.integration.dnsserver import DnsServer
from tests.integration.stsserver import http_response, policy_server  # noqa: F401

pytestmark = pytest.mark.integration

IP = "192.0.2.10"
HOST = "mail.good.test"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.good.test\r\nmax_age: 604800\r\n"
NOW = datetime.now(UTC)


@dataclass
class World:
    records: dict[str, dict[str, list[str]]]
    setup: Setup
    key: KeyFile


class FakeFetcher:
    """The policy file by domain (the PolicyFetcher protocol), as an HTTPS server would serve it."""

    def __init__(self, policies: Mapping[str, str]) -> None:
        self._policies = policies

    async def fetch(self, domain: str) -> str | Broken:
        return self._policies.get(domain, Broken("404"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def world(tmp_path: Path, ca: trustme.CA) -> World:
    key = write_key(key_root(tmp_path), "good.test", "sel", generate_key("rsa"), NOW - timedelta(days=30))
    records = {
        "good.test": {"MX": [f"10 {HOST}"], "TXT": [f"v=spf1 mx ip4:{IP} -all"]},
        HOST: {"A": [IP]},
        ipaddress.ip_address(IP).reverse_pointer: {"PTR": [HOST]},
        "sel._domainkey.good.test": {"TXT": [public_record(key.key)]},
        "_dmarc.good.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc@good.test"]},
        "_mta-sts.good.test": {"TXT": ["v=STSv1; id=20261208"]},
        "_smtp._tls.good.test": {"TXT": ["v=TLSRPTv1; rua=mailto:tlsrpt@good.test"]},
    }
    cert = ca.issue_cert(HOST)
    setup = Setup(
        domains=("good.test",),
        ips=(IP,),
        hostname=HOST,
        helo=HOST,
        dkim=DkimConfig(),
        data_dir=tmp_path,
        now=NOW,
        cert_path="cert.pem",
        cert_pem=b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        roots=ca.cert_pem.bytes(),
        dnsbl_zones=("bl.test",),
        deadline_s=10.0,
    )
    return World(records, setup, key)


async def run(world: World, policies: Mapping[str, str] | None = None) -> Report:
    with DnsServer(world.records) as server:
        resolver = DnsPythonResolver(server.nameservers)
        fetcher = FakeFetcher({"good.test": POLICY} if policies is None else policies)
        return await diagnose(world.setup, resolver, lambda _: fetcher)


def failures(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.level is Level.FAIL]


async def test_a_correct_domain_passes(world: World) -> None:
    report = await run(world)
    assert failures(report) == []
    checks = {f.check for f in report.findings if f.level is Level.OK}
    assert {"mx", "fcrdns", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "certificate", "dnsbl"} <= checks
    assert any(a.rdtype == "PTR" for a in report.answers)  # every answer kept for --verbose


def _eleven_lookups(world: World) -> None:
    includes = " ".join(f"include:i{n}.good.test" for n in range(11))
    world.records["good.test"]["TXT"] = [f"v=spf1 ip4:{IP} {includes} -all"]
    for n in range(11):
        world.records[f"i{n}.good.test"] = {"TXT": ["v=spf1 -all"]}


def _two_spf(world: World) -> None:
    world.records["good.test"]["TXT"] = [f"v=spf1 ip4:{IP} -all", "v=spf1 mx -all"]


def _no_ptr(world: World) -> None:
    del world.records[ipaddress.ip_address(IP).reverse_pointer]


def _other_dkim_key(world: World) -> None:
    world.records["sel._domainkey.good.test"] = {"TXT": [public_record(generate_key("rsa"))]}


def _dmarc_syntax(world: World) -> None:
    world.records["_dmarc.good.test"] = {"TXT": ["v=DMARC1; p=rejcet"]}


def _expired_certificate(world: World, ca: trustme.CA) -> None:
    cert = ca.issue_cert(HOST, not_before=NOW - timedelta(days=100), not_after=NOW - timedelta(days=1))
    world.setup = replace(world.setup, cert_pem=cert.cert_chain_pems[0].bytes())


FAULTS: list[tuple[str, Callable[..., None], str, str, str]] = [
    # name, fault, check, reason contains, fix contains
    ("11 SPF lookups", _eleven_lookups, "spf", "11 DNS-lookup terms", "ip4:/ip6:"),
    ("two SPF records", _two_spf, "spf", "2 SPF records", 'good.test. IN TXT "v=spf1'),
    ("missing PTR", _no_ptr, "fcrdns", "has no PTR", f"IN PTR {HOST}."),
    ("mismatched DKIM key", _other_dkim_key, "dkim", "does not match", "sel._domainkey.good.test. IN TXT"),
    (
        "DMARC syntax error",
        _dmarc_syntax,
        "dmarc",
        "syntax error",
        '_dmarc.good.test. IN TXT "v=DMARC1; p=none',
    ),
    ("expired certificate", _expired_certificate, "certificate", "expired", "renew"),
]


@pytest.mark.parametrize(("name", "fault", "check", "reason", "fix"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_a_fault_gives_one_failing_finding_with_its_fix(
    world: World, ca: trustme.CA, name: str, fault: Callable[..., None], check: str, reason: str, fix: str
) -> None:
    fault(world, ca) if fault is _expired_certificate else fault(world)
    found = failures(await run(world))
    assert len(found) == 1, found
    assert found[0].check == check
    assert reason in found[0].reason
    assert any(fix in line for line in found[0].fix), found[0].fix


async def test_a_listed_address_is_a_warning(world: World) -> None:
    world.records["10.2.0.192.bl.test"] = {"A": ["127.0.0.2"], "TXT": ["listed for spam"]}
    report = await run(world)
    assert failures(report) == []
    listed = [f for f in report.findings if f.check == "dnsbl" and f.level is Level.WARN]
    assert listed and "listed for spam" in listed[0].reason and listed[0].fix


async def _postier(*argv: str) -> tuple[int, str]:
    """``postier ARGV`` in a child process (this loop keeps serving the policy meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postier",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()


def _zone_records(snippet: str) -> dict[str, dict[str, list[str]]]:
    """The zone-file snippet as the test responder's records (names absolute)."""
    zone = dns.zone.from_text(snippet, origin=dns.name.root, relativize=False, check_origin=False)
    records: dict[str, dict[str, list[str]]] = {}
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            rdtype = dns.rdatatype.to_text(rdataset.rdtype)
            values = [r.to_text() for r in rdataset]
            records.setdefault(name.to_text().rstrip("."), {})[rdtype] = values
    return records


async def test_the_records_of_a_fresh_domain_make_doctor_pass(
    tmp_path: Path,
    ca: trustme.CA,
    policy_server: Callable[..., Any],  # noqa: F811
) -> None:
    sts = await policy_server(ca, "fresh.test", "")
    ip, host = sts.address, "mail.fresh.test"
    write_key(key_root(tmp_path / "data"), "fresh.test", "s1", generate_key("rsa"), NOW)
    cert, ca_file = tmp_path / "cert.pem", tmp_path / "ca.pem"
    ca.issue_cert(host).private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_file))
    with DnsServer({"placeholder.test": {"A": ["192.0.2.1"]}}) as server:
        config = tmp_path / "postier.toml"
        config.write_text(
            f'[server]\nhostname = "{host}"\ndata_dir = "{tmp_path / "data"}"\n'
            f'[tls]\ncert = "{cert}"\nkey = "{cert}"\n'
            f'[delivery]\nca_file = "{ca_file}"\n'
            f'[dns]\nnameservers = ["{server.host}:{server.port}"]\n'
        )
        common = ["-c", str(config), "--ip", ip, "--dnsbl", "bl.test"]
        status, snippet = await _postier("doctor", "--records", "fresh.test", *common)
        assert status == 0, snippet
        assert "s1._domainkey.fresh.test. IN TXT" in snippet and "p=none" in snippet
        policy = snippet.split("; MTA-STS policy", 1)[1].splitlines()[1:]
        sts.response = http_response("".join(line.removeprefix(";   ") + "\r\n" for line in policy))
        for name, by_type in _zone_records(snippet).items():
            for rdtype, values in by_type.items():
                server.set(name, rdtype, values)
        status, out = await _postier("doctor", "fresh.test", "--verbose", *common)
    assert status == 0, out
    assert " 0 fail" in out
    assert "DNS answers used:" in out and "_dmarc.fresh.test TXT" in out


async def test_a_silent_dns_server_ends_at_the_deadline(world: World) -> None:
    world.setup = replace(world.setup, deadline_s=1.0)
    with DnsServer(world.records, drop=["good.test"]) as server:
        resolver = DnsPythonResolver(server.nameservers, timeout_s=30.0)
        started = asyncio.get_running_loop().time()
        report = await diagnose(world.setup, resolver, lambda _: FakeFetcher({}))
        elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 5
    late = [f for f in failures(report) if "deadline" in f.reason]
    assert {f.check for f in late} >= {"mx", "spf", "dmarc", "mta-sts"}


async def test_the_command_exits_1_with_the_findings_as_json(tmp_path: Path) -> None:
    with DnsServer({"placeholder.test": {"A": ["192.0.2.1"]}}) as server:
        config = tmp_path / "postier.toml"
        config.write_text(f'[dns]\nnameservers = ["{server.host}:{server.port}"]\n')
        argv = ["doctor", "nowhere.test", "-c", str(config), "--ip", IP, "--dnsbl", "bl.test", "--json", "-v"]
        status, out = await _postier(*argv)
    assert status == 1, out
    report = json.loads(out)
    assert report["summary"]["fail"] >= 1
    mx = [f for f in report["findings"] if f["check"] == "mx"]
    assert mx[0]["level"] == "fail" and mx[0]["fix"] == ["nowhere.test. IN MX 10 localhost."]
    assert "nowhere.test MX: no such domain" in report["answers"]
