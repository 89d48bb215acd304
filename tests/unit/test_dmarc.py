"""DMARC: the record parser (table), discovery with the Public Suffix List, and the pure evaluation."""

from __future__ import annotations

import pytest
from mailauthzone import TIMEOUT, ZoneLookup

from postier.mailauth.dkimverify import DkimResult
from postier.mailauth.dmarc import DmarcRecord, discover_policy, evaluate_dmarc, from_domains, parse_record
from postier.mailauth.orgdomain import org_domain
from postier.mailauth.spf import SpfIdentity, SpfResult

RECORDS = [
    ("v=DMARC1; p=reject", {"p": "reject", "sp": "reject", "np": "reject", "pct": 100}),
    ("v=DMARC1;p=quarantine;sp=none;pct=20", {"p": "quarantine", "sp": "none", "np": "none", "pct": 20}),
    ("v=DMARC1; p=none; np=reject", {"p": "none", "sp": "none", "np": "reject"}),
    ("v=DMARC1; P=Reject; ADKIM=s; aspf=S", {"p": "reject", "adkim": "s", "aspf": "s"}),
    ("v=DMARC1; p=reject; adkim=x; pct=300", {"adkim": "r", "pct": 100}),
    ("v=DMARC1; p=reject; t=y", {"testing": True}),
    ("v=DMARC1; p=bogus; rua=mailto:r@example.com", {"p": "none"}),  # RFC 7489 §6.6.3
    ("v=DMARC1; p=reject; p=none", {"p": "reject"}),  # the first of a repeated tag
    ("v=DMARC1; p=reject; unknown=1", {"p": "reject"}),
    ("v=DMARC1 ; p = reject ; ", {"p": "reject"}),
]

INVALID = [
    "",
    "p=reject",
    "v=DMARC2; p=reject",
    "v=dmarc1; p=reject",
    "v=DMARC1; p=bogus",
    "v=DMARC1",
    "x; v=DMARC1",
]


@pytest.mark.parametrize(("text", "expected"), RECORDS)
def test_records(text: str, expected: dict[str, object]) -> None:
    record = parse_record(text)
    assert record is not None
    for name, value in expected.items():
        assert getattr(record, name) == value


@pytest.mark.parametrize("text", INVALID)
def test_invalid_records(text: str) -> None:
    assert parse_record(text) is None


def test_report_uris_with_size_limits() -> None:
    record = parse_record("v=DMARC1; p=none; rua=mailto:a@example.com!10m, mailto:b@example.org,bogus")
    assert record is not None
    assert [(u.mailto, u.max_bytes) for u in record.rua] == [
        ("a@example.com", 10 << 20),
        ("b@example.org", None),
    ]


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("x.github.io", "x.github.io"),  # the private section of the list counts
        ("co.uk", "co.uk"),
        ("EXAMPLE.COM.", "example.com"),
    ],
)
def test_org_domains(domain: str, org: str) -> None:
    assert org_domain(domain) == org


def test_from_domains() -> None:
    assert from_domains(["A <a@Example.COM>", "b@example.com, c@other.org"]) == ["example.com", "other.org"]
    assert from_domains(["undisclosed"]) == []


ZONE = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; np=reject"]},
    "mail.example.com": {"A": ["192.0.2.1"]},
    "_dmarc.example.co.uk": {"TXT": ["v=DMARC1; p=quarantine"]},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.broken.example": TIMEOUT,
    "_dmarc.spf.example": {"TXT": ["v=spf1 -all"]},
}


@pytest.mark.parametrize(
    ("domain", "where", "policy_of_failure"),
    [
        ("example.com", "example.com", "reject"),
        ("mail.example.com", "example.com", "quarantine"),  # sp= for an existing subdomain
        ("nope.example.com", "example.com", "reject"),  # np= for a subdomain that does not exist
        ("a.b.example.co.uk", "example.co.uk", "quarantine"),  # PSL: co.uk is a public suffix
        ("two.example", "", ""),  # two records: none (RFC 7489 §6.6.3)
        ("spf.example", "", ""),
        ("unknown.example", "", ""),
    ],
)
async def test_discovery(domain: str, where: str, policy_of_failure: str) -> None:
    answer = await discover_policy(ZoneLookup(ZONE), domain)
    assert answer.policy_domain == where
    result = evaluate_dmarc(answer, spf=None, dkim=[])
    assert result.result == ("fail" if where else "none")
    assert result.disposition == (policy_of_failure or "none")


async def test_discovery_temperror() -> None:
    answer = await discover_policy(ZoneLookup(ZONE), "broken.example")
    assert answer.temperror
    assert evaluate_dmarc(answer, spf=None, dkim=[]).result == "temperror"


def _spf(result: str, domain: str) -> SpfResult:
    return SpfResult(result, SpfIdentity.MAILFROM, domain, f"bounce@{domain}")


def _dkim(result: str, domain: str) -> DkimResult:
    return DkimResult(result, domain, "s1", "rsa-sha256")


def _answer(record: str, from_domain: str = "news.example.com", where: str = "example.com") -> object:
    from postier.mailauth.dmarc.discover import PolicyAnswer

    parsed = parse_record(record)
    assert isinstance(parsed, DmarcRecord)
    return PolicyAnswer(from_domain, parsed, where)


EVALUATIONS = [
    # record, spf, dkim, roll → result, disposition
    ("v=DMARC1; p=reject", _spf("pass", "example.com"), [], 0.0, "pass", "none"),
    ("v=DMARC1; p=reject", _spf("pass", "bounce.example.com"), [], 0.0, "pass", "none"),  # relaxed
    ("v=DMARC1; p=reject; aspf=s", _spf("pass", "example.com"), [], 0.0, "fail", "reject"),  # strict
    ("v=DMARC1; p=reject", None, [_dkim("pass", "example.com")], 0.0, "pass", "none"),
    ("v=DMARC1; p=reject; adkim=s", None, [_dkim("pass", "example.com")], 0.0, "fail", "reject"),
    ("v=DMARC1; p=reject; adkim=s", None, [_dkim("pass", "news.example.com")], 0.0, "pass", "none"),
    (
        "v=DMARC1; p=reject",
        _spf("pass", "evil.example"),
        [_dkim("pass", "evil.example")],
        0.0,
        "fail",
        "reject",
    ),
    (
        "v=DMARC1; p=reject",
        _spf("fail", "example.com"),
        [_dkim("fail", "example.com")],
        0.0,
        "fail",
        "reject",
    ),
    ("v=DMARC1; p=reject", None, [_dkim("temperror", "example.com")], 0.0, "temperror", "none"),
    ("v=DMARC1; p=reject", _spf("temperror", "example.com"), [], 0.0, "temperror", "none"),
    ("v=DMARC1; p=reject; pct=50", None, [], 0.49, "fail", "reject"),
    ("v=DMARC1; p=reject; pct=50", None, [], 0.5, "fail", "quarantine"),
    ("v=DMARC1; p=quarantine; pct=0", None, [], 0.0, "fail", "none"),
    ("v=DMARC1; p=reject; t=y", None, [], 0.0, "fail", "quarantine"),
    ("v=DMARC1; p=reject; sp=none", None, [], 0.0, "fail", "none"),
]


@pytest.mark.parametrize(("record", "spf", "dkim", "roll", "result", "disposition"), EVALUATIONS)
def test_evaluation(
    record: str, spf: SpfResult | None, dkim: list[DkimResult], roll: float, result: str, disposition: str
) -> None:
    outcome = evaluate_dmarc(_answer(record), spf=spf, dkim=dkim, roll=roll)  # type: ignore[arg-type]
    assert (outcome.result, outcome.disposition) == (result, disposition)
