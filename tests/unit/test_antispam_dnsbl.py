"""DNSBL scoring (pure): query names, weights, codes, refused-query answers, the blocking zone."""

from __future__ import annotations

import pytest

from postier.antispam.dnsbl import DnsblResult, Zone, evaluate, query_name
from postier.mail.replies import dnsbl_blocked


@pytest.mark.parametrize(
    ("ip", "zone", "name"),
    [
        ("192.0.2.99", "bl.test", "99.2.0.192.bl.test"),
        ("127.0.0.2", "bl.test.", "2.0.0.127.bl.test"),
        ("::ffff:192.0.2.1", "bl.test", "1.2.0.192.bl.test"),
        (
            "2001:db8:1:2::abcd",
            "bl.test",
            "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test",
        ),
    ],
)
def test_query_names_follow_rfc_5782(ip: str, zone: str, name: str) -> None:
    assert query_name(ip, zone) == name


BL = Zone("bl.test", 2.0)
CODED = Zone("coded.test", 1.0, frozenset({"127.0.0.4"}))
WL = Zone("wl.test", -5.0)

CASES = [
    # answers per zone (BL, CODED, WL) -> score, listed zones, refused, unanswered
    (([], [], []), 0.0, (), (), ()),
    ((["127.0.0.2"], [], []), 2.0, ("bl.test",), (), ()),
    ((["127.0.0.2"], ["127.0.0.2"], []), 2.0, ("bl.test",), (), ()),  # code not counted
    ((["127.0.0.2"], ["127.0.0.4"], []), 3.0, ("bl.test", "coded.test"), (), ()),
    ((["127.0.0.2"], [], ["127.0.0.9"]), -3.0, ("bl.test", "wl.test"), (), ()),
    ((["127.255.255.254"], [], []), 0.0, (), (("bl.test", "127.255.255.254"),), ()),
    ((["10.0.0.1"], [], []), 0.0, (), (), ()),  # not 127/8: not a listing
    ((None, ["127.0.0.4"], None), 1.0, ("coded.test",), (), ("bl.test", "wl.test")),
]


@pytest.mark.parametrize(("answers", "score", "listed", "refused", "unanswered"), CASES)
def test_evaluate(
    answers: tuple[list[str] | None, ...],
    score: float,
    listed: tuple[str, ...],
    refused: tuple[tuple[str, str], ...],
    unanswered: tuple[str, ...],
) -> None:
    result = evaluate((BL, CODED, WL), answers)
    assert result.score == score
    assert tuple(zone for zone, _, _ in result.listed) == listed
    assert result.refused == refused
    assert result.unanswered == unanswered


def test_the_refusal_names_the_heaviest_block_list_never_an_allow_list() -> None:
    result = DnsblResult(
        3.0, (("a.test", 1.0, ("127.0.0.2",)), ("b.test", 2.0, ("127.0.0.2",)), ("w.test", -1.0, ()))
    )
    assert result.blocking_zone == "b.test"
    assert DnsblResult(-1.0, (("w.test", -1.0, ()),)).blocking_zone == ""
    reply = dnsbl_blocked("192.0.2.7", "b.test")
    assert str(reply) == "554 5.7.1 Service unavailable; client [192.0.2.7] blocked using b.test"
