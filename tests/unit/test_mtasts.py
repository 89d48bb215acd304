"""MTA-STS parsing and matching (RFC 8461 §3.1, §3.2, §4.1), table-driven; the HTTP response reader."""

from __future__ import annotations

import pytest

from postier.delivery.security.mtasts import (
    MAX_AGE_LIMIT_S,
    Broken,
    StsMode,
    StsPolicy,
    StsRecord,
    allowed_hosts,
    mx_matches,
    parse_policy,
    parse_record,
)
from postier.delivery.security.mtasts_fetch import parse_http_response

GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n"


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["v=STSv1; id=20160831085700Z;"], StsRecord("20160831085700Z")),
        (["v=STSv1;id=abc"], StsRecord("abc")),
        (["v=spf1 -all", "v=STSv1; id=x1; ext=1"], StsRecord("x1")),
        ([], None),
        (["v=spf1 -all"], None),
        (["v=STSv1; id=a", "v=STSv1; id=b"], Broken("2 TXT records start with v=STSv1")),
        (["v=STSv1;"], Broken("the TXT record has no valid id (1 to 32 letters and digits)")),
        (["v=STSv1; id=" + "a" * 33], Broken("the TXT record has no valid id (1 to 32 letters and digits)")),
        (["v=STSv1; id=a-b"], Broken("the TXT record has no valid id (1 to 32 letters and digits)")),
        (["v=STSv1; id"], Broken("bad field 'id' in the TXT record")),
    ],
)
def test_parse_record(texts: list[str], expected: object) -> None:
    assert parse_record(texts) == expected


def test_parse_policy_good() -> None:
    assert parse_policy(GOOD) == StsPolicy(StsMode.ENFORCE, 86400, ("mail.example.com", "*.example.net"))
    assert parse_policy(GOOD.replace("\r\n", "\n")) == parse_policy(GOOD)
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 5\n") == StsPolicy(StsMode.NONE, 5, ())
    big = parse_policy(GOOD.replace("86400", "99999999999"[:10]))
    assert isinstance(big, StsPolicy) and big.max_age_s == MAX_AGE_LIMIT_S
    policy = parse_policy(GOOD)
    assert isinstance(policy, StsPolicy) and parse_policy(policy.to_text()) == policy


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mode: enforce\nmx: a.b\nmax_age: 1\n", "no 'version: STSv1'"),
        ("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n", "bad mode"),
        ("version: STSv1\nmode: enforce\nmx: a.b\n", "bad max_age"),
        ("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", "bad max_age"),
        ("version: STSv1\nmode: testing\nmax_age: 1\n", "names no mx"),
        ("version: STSv1\nmode: enforce\nmx: a..b\nmax_age: 1\n", "bad mx pattern"),
        ("version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n", "bad mx pattern"),
        ("<html>hello</html>", "bad line"),
        ("version: STSv1\n" + "x" * 70000, "larger than"),
    ],
)
def test_parse_policy_broken(text: str, reason: str) -> None:
    result = parse_policy(text)
    assert isinstance(result, Broken) and reason in result.reason


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("MAIL.Example.com.", "mail.example.com", True),
        ("mx1.example.net", "*.example.net", True),
        ("example.net", "*.example.net", False),
        ("a.mx1.example.net", "*.example.net", False),  # one label only (§4.1)
        ("evil-example.net", "*.example.net", False),
        ("mail.example.com", "other.example.com", False),
    ],
)
def test_mx_matches(host: str, pattern: str, expected: bool) -> None:
    assert mx_matches(host, pattern) is expected


def test_allowed_hosts_keeps_order() -> None:
    policy = parse_policy(GOOD)
    assert isinstance(policy, StsPolicy)
    hosts = ["b.example.net", "evil.test", "mail.example.com"]
    assert allowed_hosts(policy, hosts) == ["b.example.net", "mail.example.com"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "hello"),
        (b"HTTP/1.0 200 OK\r\n\r\nhello", "hello"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", "hello"),
        (b"HTTP/1.1 301 Moved\r\nLocation: https://evil.test/\r\n\r\n", Broken),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", Broken),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nhello", Broken),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", Broken),
        (b"garbage", Broken),
    ],
)
def test_parse_http_response(raw: bytes, expected: object) -> None:
    result = parse_http_response(raw)
    if expected is Broken:
        assert isinstance(result, Broken)
    else:
        assert result == expected


def test_redirect_is_named() -> None:
    result = parse_http_response(b"HTTP/1.1 302 Found\r\nLocation: https://evil.test/x\r\n\r\n")
    assert isinstance(result, Broken) and "not followed" in result.reason
