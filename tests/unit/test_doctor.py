"""The pure judgements of ``postier doctor``, table-driven: gathered data in, findings out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from postier.delivery.security.mtasts import Broken, StsMode, StsPolicy, StsRecord
from postier.dns import MxRecord, NoData, NxDomain, TemporaryDnsError
from postier.doctor.certificate import judge_certificate
from postier.doctor.dkim import DkimData, judge_dkim, judge_key
from postier.doctor.dmarc import DmarcData, RuaCheck, judge_dmarc
from postier.doctor.dnsbl import Listing, judge_dnsbl, query_name
from postier.doctor.findings import Finding, Level
from postier.doctor.hosts import FcrdnsData, MxData, judge_fcrdns, judge_mx
from postier.doctor.mtasts import StsData, judge_sts, judge_tlsrpt
from postier.doctor.providers import judge_providers
from postier.doctor.records import zone_snippet
from postier.doctor.spf import SpfData, judge_spf, suggested_spf
from postier.mailauth.dkim.keys import generate_key
from postier.mailauth.dkim.keystore import KeyFile
from postier.mailauth.dkim.table import Lookup, Published, State, Status
from postier.mailauth.spf import SpfAudit

IP = "192.0.2.10"
HOST = "mail.example.test"
D = "example.test"


def levels(findings: list[Finding]) -> list[str]:
    return [f.level.value for f in findings]


MX_CASES = [
    # mx, addresses, expected levels, reason contains
    (NxDomain(D, "MX"), {}, ["fail"], "does not exist"),
    (NoData(D, "MX"), {}, ["fail"], "no MX record"),
    (TemporaryDnsError(D, "MX"), {}, ["fail"], "lookup failed"),
    ([MxRecord(0, ".")], {}, ["fail"], "null MX"),
    ([MxRecord(10, HOST)], {HOST: [IP]}, ["ok"], "is this server"),
    ([MxRecord(10, "mx.other.test")], {"mx.other.test": [IP]}, ["ok"], "is this server"),
    ([MxRecord(10, "mx.other.test")], {"mx.other.test": ["198.51.100.1"]}, ["warn"], "none is this server"),
    ([MxRecord(10, HOST)], {HOST: NoData(HOST, "A")}, ["fail", "ok"], "has no address"),
]


@pytest.mark.parametrize(("mx", "addresses", "expected", "reason"), MX_CASES)
def test_judge_mx(mx: object, addresses: dict[str, object], expected: list[str], reason: str) -> None:
    found = judge_mx(MxData(D, mx, addresses), HOST, [IP])  # type: ignore[arg-type]
    assert levels(found) == expected
    assert reason in found[0].reason


FCRDNS_CASES = [
    # ptr, forward, helo, level, reason contains
    (NxDomain("r", "PTR"), {}, HOST, "fail", "no PTR"),
    ([HOST], {HOST: ["198.51.100.1"]}, HOST, "fail", "do not include"),
    ([HOST], {HOST: NoData(HOST, "A")}, HOST, "fail", "do not include"),
    ([HOST], {HOST: [IP]}, HOST, "ok", "the HELO name"),
    ([HOST], {HOST: [IP]}, "other.test", "warn", "the HELO name is other.test"),
]


@pytest.mark.parametrize(("ptr", "forward", "helo", "level", "reason"), FCRDNS_CASES)
def test_judge_fcrdns(ptr: object, forward: dict[str, object], helo: str, level: str, reason: str) -> None:
    (found,) = judge_fcrdns(FcrdnsData(IP, ptr, forward), HOST, helo)  # type: ignore[arg-type]
    assert found.level.value == level and reason in found.reason


PASS = SpfAudit("pass", "matched ip4", 1, 0)
WALK = SpfAudit("fail", "matched -all", 1, 0)
SPF_CASES = [
    # records, walk, by_ip, failing reasons (each a substring of one fail)
    ([], None, (), ["no SPF record"]),
    (["v=spf1 -all", "v=spf1 mx -all"], None, (), ["2 SPF records"]),
    (["v=spf1 ip4:300.1.1.1 -all"], None, (), ["syntax error"]),
    (["v=spf1 ip4:192.0.2.10 -all"], WALK, ((IP, PASS),), []),
    (
        ["v=spf1 ip4:192.0.2.10 -all"],
        SpfAudit("permerror", "", 11, 0),
        ((IP, PASS),),
        ["11 DNS-lookup terms"],
    ),
    (["v=spf1 ip4:192.0.2.10 -all"], SpfAudit("permerror", "", 3, 3), ((IP, PASS),), ["3 void lookups"]),
    (["v=spf1 mx -all"], WALK, ((IP, SpfAudit("fail", "matched -all", 1, 0)),), [f"does not authorize {IP}"]),
    (["v=spf1 ip4:192.0.2.10 +all"], WALK, ((IP, PASS),), ["ends in +all"]),
]


@pytest.mark.parametrize(("records", "walk", "by_ip", "reasons"), SPF_CASES)
def test_judge_spf(
    records: list[str], walk: SpfAudit | None, by_ip: tuple[tuple[str, SpfAudit], ...], reasons: list[str]
) -> None:
    found = judge_spf(SpfData(D, records, walk, by_ip), [IP])
    fails = [f for f in found if f.level is Level.FAIL]
    assert len(fails) == len(reasons)
    for f, reason in zip(fails, reasons, strict=True):
        assert reason in f.reason and f.fix


def test_suggested_spf_adds_the_missing_address_before_all() -> None:
    assert suggested_spf(D, [IP, "2001:db8::1"], "v=spf1 mx -all") == (
        f'{D}. IN TXT "v=spf1 mx ip4:{IP} ip6:2001:db8::1 -all"'
    )
    assert suggested_spf(D, [IP]) == f'{D}. IN TXT "v=spf1 mx ip4:{IP} ~all"'


DMARC_CASES = [
    # records, rua checks, spf aligns, dkim aligns, expected levels
    ([], {}, True, True, ["fail"]),
    (["v=DMARC1; p=none", "v=DMARC1; p=reject"], {}, True, True, ["fail"]),
    (["v=DMARC1; p=rejcet"], {}, True, True, ["fail"]),
    (
        ["v=DMARC1; p=reject; rua=mailto:d@example.test"],
        {"d@example.test": RuaCheck("d@example.test", True, True)},
        True,
        False,
        ["ok", "ok", "ok"],
    ),
    (
        ["v=DMARC1; p=none; rua=mailto:d@example.test"],
        {"d@example.test": RuaCheck("d@example.test", True, True)},
        True,
        True,
        ["warn", "ok", "ok"],
    ),
    (["v=DMARC1; p=reject"], {}, True, True, ["ok", "warn", "ok"]),
    (
        ["v=DMARC1; p=reject; rua=mailto:d@rep.test"],
        {"d@rep.test": RuaCheck("d@rep.test", True, False)},
        True,
        True,
        ["ok", "warn", "ok"],
    ),
    (
        ["v=DMARC1; p=reject; rua=mailto:d@rep.test"],
        {"d@rep.test": RuaCheck("d@rep.test", False, True)},
        True,
        True,
        ["ok", "fail", "ok"],
    ),
    (
        ["v=DMARC1; p=reject; rua=mailto:d@example.test"],
        {"d@example.test": RuaCheck("d@example.test", True, True)},
        False,
        False,
        ["ok", "ok", "fail"],
    ),
]


@pytest.mark.parametrize(("records", "rua", "spf", "dkim", "expected"), DMARC_CASES)
def test_judge_dmarc(
    records: list[str], rua: dict[str, RuaCheck], spf: bool, dkim: bool, expected: list[str]
) -> None:
    assert levels(judge_dmarc(DmarcData(D, records, rua), spf, dkim)) == expected


ENFORCE = StsPolicy(StsMode.ENFORCE, 604800, (HOST,))
STS_CASES = [
    # record, policy, mx hosts, level, reason contains
    (None, None, [HOST], "warn", "no MTA-STS record"),
    (Broken("bad id"), None, [HOST], "fail", "bad id"),
    (StsRecord("1"), Broken("404"), [HOST], "fail", "policy file: 404"),
    (StsRecord("1"), ENFORCE, [HOST], "ok", "enforce"),
    (StsRecord("1"), ENFORCE, [HOST, "mx2.example.test"], "fail", "does not list MX mx2.example.test"),
    (StsRecord("1"), StsPolicy(StsMode.TESTING, 86400, (HOST,)), [HOST], "warn", "testing"),
]


@pytest.mark.parametrize(("record", "policy", "hosts", "level", "reason"), STS_CASES)
def test_judge_sts(record: object, policy: object, hosts: list[str], level: str, reason: str) -> None:
    (found,) = judge_sts(StsData(D, record, policy, []), hosts, HOST)  # type: ignore[arg-type]
    assert found.level.value == level and reason in found.reason


@pytest.mark.parametrize(
    ("texts", "level"),
    [
        ([], "warn"),
        (["v=TLSRPTv1; rua=mailto:t@example.test"], "ok"),
        (["v=TLSRPTv1; rua=ftp://x"], "fail"),
        (["v=TLSRPTv1; rua=mailto:a@x", "v=TLSRPTv1; rua=mailto:b@x"], "fail"),
    ],
)
def test_judge_tlsrpt(texts: list[str], level: str) -> None:
    (found,) = judge_tlsrpt(StsData(D, None, None, texts))
    assert found.level.value == level


NOW = datetime.now(UTC)
CA = trustme.CA()


@pytest.mark.parametrize(
    ("name", "not_after", "roots", "expected", "reason"),
    [
        (HOST, NOW + timedelta(days=90), CA.cert_pem.bytes(), ["ok"], "chain verifies"),
        (HOST, NOW + timedelta(days=10), CA.cert_pem.bytes(), ["warn"], "expires in"),
        (HOST, NOW - timedelta(days=1), CA.cert_pem.bytes(), ["fail"], "expired"),
        ("other.test", NOW + timedelta(days=90), CA.cert_pem.bytes(), ["fail"], f"does not name {HOST}"),
        (HOST, NOW + timedelta(days=90), trustme.CA().cert_pem.bytes(), ["fail"], "does not verify"),
    ],
)
def test_judge_certificate(
    name: str, not_after: datetime, roots: bytes, expected: list[str], reason: str
) -> None:
    cert = CA.issue_cert(name, not_before=NOW - timedelta(days=100), not_after=not_after)
    found = judge_certificate("cert.pem", cert.cert_chain_pems[0].bytes(), HOST, roots, NOW)
    assert levels(found) == expected and reason in found[0].reason


def test_no_certificate_file_is_a_warning_an_unreadable_one_a_failure() -> None:
    assert levels(judge_certificate("", None, HOST, b"", NOW)) == ["warn"]
    assert levels(judge_certificate("/etc/cert.pem", None, HOST, b"", NOW)) == ["fail"]


@pytest.mark.parametrize(
    ("answer", "level"),
    [
        (NxDomain("x", "A"), "ok"),
        (["127.0.0.2"], "warn"),
        (["127.255.255.254"], "warn"),
        (TemporaryDnsError("x", "A"), "warn"),
    ],
)
def test_judge_dnsbl(answer: object, level: str) -> None:
    found = judge_dnsbl(Listing(IP, "zen.spamhaus.org", answer))  # type: ignore[arg-type]
    assert found.level.value == level


def test_dnsbl_query_names() -> None:
    assert query_name("192.0.2.10", "bl.test") == "10.2.0.192.bl.test"
    assert query_name("2001:db8::1", "bl.test").startswith("1.0.0.0.") and query_name(
        "2001:db8::1", "bl.test"
    ).endswith(".8.b.d.0.1.0.0.2.bl.test")


def test_zone_snippet_without_keys_says_how_to_make_one() -> None:
    snippet = zone_snippet(D, HOST, [IP], [])
    assert f"{D}. IN MX 10 {HOST}." in snippet
    assert f"postier dkim keygen {D}" in snippet
    assert f'_dmarc.{D}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{D}"' in snippet
    assert f"10.2.0.192.in-addr.arpa. IN PTR {HOST}." in snippet


def _f(check: str, subject: str, level: Level, reason: str = "") -> Finding:
    return Finding(check, subject, level, reason)


ALL_OK = [
    _f("spf", D, Level.OK),
    _f("dkim", f"{D} sel", Level.OK),
    _f("dmarc", D, Level.WARN, "p=none"),
    _f("dmarc", D, Level.OK, "alignment possible through SPF"),
    _f("fcrdns", IP, Level.OK),
]


@pytest.mark.parametrize(
    ("findings", "expected"),
    [
        (ALL_OK, ["ok", "ok", "ok", "ok", "warn"]),
        ([*ALL_OK[:1], _f("dkim", D, Level.FAIL), *ALL_OK[2:]], ["warn", "ok", "ok", "ok", "warn"]),
        ([*ALL_OK[:3], *ALL_OK[4:]], ["ok", "ok", "warn", "ok", "warn"]),
        ([*ALL_OK[:4], _f("fcrdns", IP, Level.FAIL)], ["ok", "ok", "ok", "warn", "warn"]),
    ],
)
def test_provider_lines_never_fail_but_point_at_the_findings(
    findings: list[Finding], expected: list[str]
) -> None:
    assert levels(judge_providers(D, [IP], findings)) == expected


RSA = generate_key("rsa")
ED = generate_key("ed25519")


def _status(state: State, published: Published, key: object = RSA, detail: str = "") -> Status:
    entry = KeyFile(D, "sel", Path("/keys/sel.pem"), key, NOW)  # type: ignore[arg-type]
    return Status(entry, Lookup(published, detail), state, "note")


@pytest.mark.parametrize(
    ("status", "level", "reason"),
    [
        (_status(State.ACTIVE, Published.MATCHES), "ok", "matches the key"),
        (_status(State.ACTIVE, Published.UNKNOWN, detail="timeout"), "warn", "could not be checked"),
        (_status(State.MISMATCH, Published.MISMATCH, detail="p= is another key"), "fail", "does not match"),
        (_status(State.UNPUBLISHED, Published.MISSING), "fail", "is not published"),
        (_status(State.NEXT, Published.MISSING), "warn", "next key"),
        (_status(State.RETIRED, Published.MATCHES), "warn", "stale selector"),
        (_status(State.DISABLED, Published.MATCHES), "warn", "signing is off"),
        (_status(State.ACTIVE, Published.MATCHES, generate_key("rsa", 1024)), "warn", "1024 bits"),
    ],
)
def test_judge_key(status: Status, level: str, reason: str) -> None:
    found = judge_key(status)
    assert found is not None and found.level.value == level and reason in found.reason


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], ["fail"]),
        ([_status(State.ACTIVE, Published.MATCHES)], ["ok"]),
        ([_status(State.ACTIVE, Published.MATCHES, ED)], ["ok", "warn"]),
        ([_status(State.MISMATCH, Published.MISMATCH)], ["fail"]),
    ],
)
def test_judge_dkim(statuses: list[Status], expected: list[str]) -> None:
    assert levels(judge_dkim(D, DkimData(statuses, []))) == expected


def test_the_block_lists_asked_are_given_then_configured_then_public() -> None:
    from postier.cli.doctor_cmd import _dnsbl_zones
    from postier.config import parse_config
    from postier.doctor.dnsbl import DEFAULT_ZONES

    lists = [{"zone": "bl.example.test", "weight": 2.0}, {"zone": "wl.example.test", "weight": -5.0}]
    configured = parse_config({"antispam": {"dnsbl": lists}})
    assert _dnsbl_zones(["given.test"], configured) == ("given.test",)
    assert _dnsbl_zones([], configured) == ("bl.example.test",)  # an allow list is not a block list
    assert _dnsbl_zones([], parse_config({})) == DEFAULT_ZONES
