"""The courier's pure parts: failure scopes (``classify``), the choice of the final reply when every host
failed (``AttemptBook``), client TLS settings, and DNS outcomes with a fake resolver (no sockets)."""

from __future__ import annotations

import ssl

import pytest

from postier.delivery.attempts import NO_HOSTS, AttemptBook, classify
from postier.delivery.courier import SmtpCourier
from postier.delivery.ownaddresses import OwnAddresses
from postier.delivery.tlsclient import TlsContexts, is_ip_literal, strip_ip_literal
from postier.delivery.transport import Attempt, Destination, DestinationKind, Hop, OutboundMessage, TlsPolicy
from postier.dns import MxRecord, NoData, NxDomain, TemporaryDnsError
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.events import TransactionResult

A, B = Recipient(Address("a", "dest.test")), Recipient(Address("b", "dest.test"))


def r(code: int, status: str = "") -> Reply:
    return Reply(code, EnhancedStatus.parse(status) if status else None, "text")


OK, OK_RCPT, GO = r(250, "2.1.0"), r(250, "2.1.5"), r(354)
DONE = r(250, "2.0.0")
LOST = r(421, "4.4.2")

# (name, result, lmtp, expected [(code, is_site)] per recipient)
CASES = [
    (
        "delivered",
        TransactionResult((A, B), OK, (OK_RCPT, OK_RCPT), GO, (DONE,)),
        False,
        [(250, False), (250, False)],
    ),
    (
        "rcpt 4xx and 5xx are final",
        TransactionResult((A, B), OK, (r(450), r(550)), None),
        False,
        [(450, False), (550, False)],
    ),
    (
        "one rcpt refused, data ok",
        TransactionResult((A, B), OK, (OK_RCPT, r(550)), GO, (DONE,)),
        False,
        [(250, False), (550, False)],
    ),
    (
        "mail 4xx is a site failure",
        TransactionResult((A, B), r(451), (None, None)),
        False,
        [(451, True), (451, True)],
    ),
    (
        "mail 5xx fails the message",
        TransactionResult((A, B), r(550), (None, None)),
        False,
        [(550, False), (550, False)],
    ),
    (
        "data 4xx: site",
        TransactionResult((A, B), OK, (OK_RCPT, r(550)), r(451)),
        False,
        [(451, True), (550, False)],
    ),
    ("data 5xx: final", TransactionResult((A,), OK, (OK_RCPT,), r(554)), False, [(554, False)]),
    (
        "smtp end of data 4xx: site",
        TransactionResult((A,), OK, (OK_RCPT,), GO, (r(452),)),
        False,
        [(452, True)],
    ),
    (
        "smtp end of data 5xx: final",
        TransactionResult((A,), OK, (OK_RCPT,), GO, (r(552),)),
        False,
        [(552, False)],
    ),
    (
        "lmtp end of data 4xx: final",
        TransactionResult((A, B), OK, (OK_RCPT, OK_RCPT), GO, (DONE, r(452))),
        True,
        [(250, False), (452, False)],
    ),
    (
        "421 at rcpt: site",
        TransactionResult((A, B), OK, (OK_RCPT, LOST), LOST),
        False,
        [(421, True), (421, True)],
    ),
    (
        "421 at lmtp end of data: site",
        TransactionResult((A,), OK, (OK_RCPT,), GO, (LOST,)),
        True,
        [(421, True)],
    ),
    (
        "the engine's own refusal",
        TransactionResult((A,), r(552, "5.3.4"), (), is_local=True),
        False,
        [(552, False)],
    ),
]


@pytest.mark.parametrize(("name", "result", "lmtp", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classify(name: str, result: TransactionResult, lmtp: bool, expected: list[tuple[int, bool]]) -> None:
    assert [(reply.code, is_site) for reply, is_site in classify(result, lmtp=lmtp)] == expected


def attempt(code: int, status: str, remote: str | None = None) -> Attempt:
    return Attempt(A, Reply(code, EnhancedStatus.parse(status), "x"), remote)


def test_book_prefers_a_servers_reply_then_temporary_then_latest() -> None:
    book = AttemptBook([A, B])
    book.site_failure(attempt(451, "4.3.0", "mx1 [192.0.2.1]:25"))
    book.site_failure(attempt(421, "4.4.1"))  # our "connection refused" says less
    book.site_failure(attempt(550, "5.4.4"))  # a permanent DNS failure never overrides a temporary one
    out = book.attempts()
    assert [(a.recipient, a.reply.code, a.remote_mta) for a in out] == [
        (A, 451, "mx1 [192.0.2.1]:25"),
        (B, 451, "mx1 [192.0.2.1]:25"),
    ]


def test_book_final_replies_win_and_pending_shrinks() -> None:
    book = AttemptBook([A, B])
    book.site_failure(attempt(421, "4.4.1"))
    book.final(1, Attempt(B, DONE, "mx2"))
    assert book.pending == [0] and not book.is_done
    book.final(0, Attempt(A, DONE, "mx2"))
    assert book.is_done and [a.reply.code for a in book.attempts()] == [250, 250]


def test_book_without_any_try_says_no_host() -> None:
    assert AttemptBook([A]).attempts() == [Attempt(A, NO_HOSTS)]


@pytest.mark.parametrize(
    ("host", "literal", "stripped"),
    [
        ("192.0.2.1", True, "192.0.2.1"),
        ("[192.0.2.1]", True, "192.0.2.1"),
        ("[IPv6:2001:db8::1]", True, "2001:db8::1"),
        ("2001:db8::1", True, "2001:db8::1"),
        ("mx.example.org", False, "mx.example.org"),
        ("[mx.example.org]", False, "mx.example.org"),
    ],
)
def test_ip_literals(host: str, literal: bool, stripped: str) -> None:
    assert is_ip_literal(host) is literal
    assert strip_ip_literal(host) == stripped


def test_tls_contexts() -> None:
    contexts = TlsContexts()
    assert contexts.context(TlsPolicy.NONE) is None
    for policy in (TlsPolicy.OPPORTUNISTIC, TlsPolicy.REQUIRED):
        context = contexts.context(policy)
        assert context is not None and context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    verify = contexts.context(TlsPolicy.VERIFY)
    assert verify is not None and verify.verify_mode == ssl.CERT_REQUIRED and verify.check_hostname
    assert verify.minimum_version == ssl.TLSVersion.TLSv1_2
    assert contexts.context(TlsPolicy.VERIFY) is verify  # made once
    assert TlsContexts.server_hostname("MX.example.org.", TlsPolicy.VERIFY) == "MX.example.org"
    assert TlsContexts.server_hostname("[192.0.2.1]", TlsPolicy.OPPORTUNISTIC) is None  # no SNI for a literal
    assert (
        TlsContexts.server_hostname("[192.0.2.1]", TlsPolicy.VERIFY) == "192.0.2.1"
    )  # checked against IP SANs


# --- DNS outcomes, with a fake resolver (no connection is ever attempted) ---------------------------


class FakeResolver:
    """Implements ``postier.dns.Resolver``: each name maps to an error to raise."""

    def __init__(self, errors: dict[str, type[Exception]]) -> None:
        self.errors = errors
        self.asked: list[str] = []

    async def mx(self, domain: str) -> list[MxRecord]:
        raise NxDomain(domain, "MX")

    async def addresses(self, host: str) -> list[str]:
        self.asked.append(host)
        raise self.errors[host](host, "A")

    async def txt(self, name: str) -> list[str]:
        raise NxDomain(name, "TXT")


MESSAGE = OutboundMessage("Q1", Envelope(Address("s", "origin.test"), (A,)), b"Subject: x\r\n\r\nx\r\n")


def destination(kind: DestinationKind, *hosts: str) -> Destination:
    return Destination("k", kind, "dest.test", tuple(Hop(h) for h in hosts), TlsPolicy.OPPORTUNISTIC)


@pytest.mark.parametrize(
    ("kind", "errors", "expected"),
    [
        (DestinationKind.MX, {"mx1": NxDomain, "mx2": NoData}, (550, "5.4.4")),
        (DestinationKind.MX, {"mx1": NxDomain, "mx2": TemporaryDnsError}, (451, "4.4.3")),
        (DestinationKind.MX, {"mx1": TemporaryDnsError, "mx2": NxDomain}, (451, "4.4.3")),
        (DestinationKind.RELAY, {"mx1": NxDomain, "mx2": NxDomain}, (451, "4.4.4")),
    ],
)
async def test_host_lookups(
    kind: DestinationKind, errors: dict[str, type[Exception]], expected: tuple[int, str]
) -> None:
    resolver = FakeResolver(errors)
    courier = SmtpCourier(resolver, helo_name="out.test")
    (result,) = await courier.deliver(destination(kind, "mx1", "mx2"), MESSAGE, [A])
    await courier.close()
    assert (result.reply.code, str(result.reply.status)) == expected
    assert result.recipient == A and result.remote_mta is None
    assert resolver.asked == ["mx1", "mx2"]


async def test_no_hosts_and_no_recipients() -> None:
    courier = SmtpCourier(FakeResolver({}), helo_name="out.test")
    assert await courier.deliver(destination(DestinationKind.MX), MESSAGE, [A]) == [Attempt(A, NO_HOSTS)]
    assert await courier.deliver(destination(DestinationKind.MX, "mx1"), MESSAGE, []) == []
    await courier.close()


# --- never to ourselves ------------------------------------------------------------------------------


def test_own_addresses() -> None:
    own = OwnAddresses([("127.0.0.5", 25), ("0.0.0.0", 2525), ("[::]", 587), ("mail.example.test", 26)])
    assert own.is_ours("127.0.0.5", 25) and not own.is_ours("127.0.0.5", 26)
    assert own.is_ours("::ffff:127.0.0.5", 25)  # an IPv4-mapped IPv6 address is the same host
    assert own.is_ours("127.0.0.9", 2525) and own.is_ours("::1", 587)  # wildcards: every local address
    assert not own.is_ours("192.0.2.1", 2525)  # TEST-NET-1: not an address of this host
    assert not own.is_ours("not-an-address", 25) and not OwnAddresses().is_ours("127.0.0.1", 25)
    assert own.is_ours("0.0.0.0", 2525) and own.is_ours("::", 587)  # "MX 0.0.0.0" reaches this host
    loopback_only = OwnAddresses([("127.0.0.1", 25)])
    assert loopback_only.is_ours("0.0.0.0", 25) and not loopback_only.is_ours("0.0.0.0", 26)


class ListedResolver(FakeResolver):
    """Every host resolves to the listed addresses."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__({})
        self.listed = addresses

    async def addresses(self, host: str) -> list[str]:
        self.asked.append(host)
        return self.listed


@pytest.mark.parametrize(
    ("kind", "expected"), [(DestinationKind.MX, (554, "5.4.6")), (DestinationKind.RELAY, (451, "4.4.6"))]
)
async def test_a_host_that_is_us_is_a_loop(kind: DestinationKind, expected: tuple[int, str]) -> None:
    resolver = ListedResolver(["192.0.2.9", "127.0.0.7"])
    own = OwnAddresses([("127.0.0.7", 25)])
    courier = SmtpCourier(resolver, helo_name="out.test", own=own)
    (result,) = await courier.deliver(destination(kind, "mx1", "mx2"), MESSAGE, [A])  # never connects
    await courier.close()
    assert (result.reply.code, str(result.reply.status)) == expected
    assert "loops back to this server (mx1 [127.0.0.7]:25)" in result.reply.text
    assert resolver.asked == ["mx1"]  # RFC 5321 §5.1: the hosts after us are not tried
