"""What the client sends for a message: checks against the peer's extensions before anything is sent,
MAIL/RCPT parameters (SIZE, BODY, SMTPUTF8, DSN), and the body's wire form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.address import Address
from postier.mail.envelope import Notify, Recipient, Ret
from postier.smtp.client.connection import ClientConnection
from postier.smtp.client.events import TransactionResult
from postier.smtp.client.message import normalise_line_endings, prepare_message
from postier.smtp.framing import DataReader

SENDER = Address("sender", "origin.test")
FROM = "MAIL FROM:<sender@origin.test>"
ASCII_RCPT = Recipient(Address("a", "dest.test"))
UTF8_RCPT = Recipient(Address("jörg", "dest.test"))


def ready(*extensions: str) -> ClientConnection:
    conn = ClientConnection(local_hostname="client.test")
    conn.receive_data(b"220 mx.test\r\n")
    conn.next_event()
    conn.ehlo()
    lines = ["mx.test", *extensions]
    last = len(lines) - 1
    conn.receive_data("".join(f"250{' ' if i == last else '-'}{x}\r\n" for i, x in enumerate(lines)).encode())
    conn.next_event()
    return conn


# (name, extensions, recipient, body, smtputf8, expected enhanced status)
REFUSED = [
    ("bigger than SIZE", ("SIZE 10", "8BITMIME"), ASCII_RCPT, b"x" * 20, False, "5.3.4"),
    ("UTF-8 address, no SMTPUTF8", ("8BITMIME",), UTF8_RCPT, b"hi", False, "5.6.7"),
    (
        "SMTPUTF8 message with UTF-8 headers, not offered",
        ("8BITMIME",),
        ASCII_RCPT,
        "Subject: café\r\n\r\nhi\r\n".encode(),
        True,
        "5.6.7",
    ),
    ("8-bit body, no 8BITMIME", ("SIZE 1000",), ASCII_RCPT, b"caf\xc3\xa9", False, "5.6.3"),
]


@pytest.mark.parametrize(
    ("name", "extensions", "recipient", "body", "utf8", "status"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused_before_anything_is_sent(
    name: str, extensions: tuple[str, ...], recipient: Recipient, body: bytes, utf8: bool, status: str
) -> None:
    conn = ready(*extensions)
    assert conn.send_mail(SENDER, [recipient], body, smtputf8=utf8) == b""
    result = conn.next_event()
    assert isinstance(result, TransactionResult) and result.is_local
    assert [str(r.status) for r in result.outcomes] == [status]
    assert result.outcomes[0].code >= 500
    assert conn.is_idle


# (name, extensions, recipient, body, kwargs, expected MAIL line, expected RCPT line)
SENT = [
    ("nothing offered", (), ASCII_RCPT, b"hi", {}, FROM, "RCPT TO:<a@dest.test>"),
    (
        "SIZE 0 is no limit",
        ("SIZE 0",),
        ASCII_RCPT,
        b"x" * 50,
        {},
        FROM + " SIZE=52",
        None,
    ),
    (
        "8-bit body",
        ("8BITMIME",),
        ASCII_RCPT,
        b"\xff",
        {},
        FROM + " BODY=8BITMIME",
        None,
    ),
    ("7-bit body: no BODY=", ("8BITMIME",), ASCII_RCPT, b"hi", {}, FROM, None),
    (
        "SMTPUTF8 message, ASCII envelope and headers, peer without SMTPUTF8: sent as it is",
        ("8BITMIME",),
        ASCII_RCPT,
        "Subject: hi\r\n\r\ncafé\r\n".encode(),
        {"smtputf8": True},
        FROM + " BODY=8BITMIME",
        "RCPT TO:<a@dest.test>",
    ),
    (
        "SMTPUTF8 message, ASCII everywhere, peer with SMTPUTF8: the flag is passed on",
        ("SMTPUTF8",),
        ASCII_RCPT,
        b"Subject: hi\r\n\r\nhi\r\n",
        {"smtputf8": True},
        FROM + " SMTPUTF8",
        None,
    ),
    (
        "UTF-8 address with SMTPUTF8",
        ("SMTPUTF8", "8BITMIME"),
        UTF8_RCPT,
        b"hi",
        {},
        FROM + " SMTPUTF8",
        "RCPT TO:<jörg@dest.test>",
    ),
    (
        "DSN offered: RET, ENVID, NOTIFY, ORCPT in xtext",
        ("DSN",),
        Recipient(
            Address("a+b", "dest.test"), frozenset({Notify.DELAY, Notify.FAILURE}), "rfc822;a+b=c@dest.test"
        ),
        b"hi",
        {"ret": Ret.HDRS, "envid": "Q1 x"},
        FROM + " RET=HDRS ENVID=Q1+20x",
        "RCPT TO:<a+b@dest.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+2Bb+3Dc@dest.test",
    ),
    (
        "DSN not offered: no DSN parameters",
        ("SIZE 100",),
        Recipient(Address("a", "dest.test"), frozenset({Notify.NEVER}), "rfc822;a@dest.test"),
        b"hi",
        {"ret": Ret.FULL, "envid": "Q1"},
        FROM + " SIZE=4",
        "RCPT TO:<a@dest.test>",
    ),
    (
        "non-ASCII ORCPT is left out",
        ("DSN", "SMTPUTF8"),
        Recipient(Address("a", "dest.test"), None, "rfc822;jörg@dest.test"),
        b"hi",
        {},
        None,
        "RCPT TO:<a@dest.test>",
    ),
]


@pytest.mark.parametrize(
    ("name", "extensions", "recipient", "body", "kwargs", "mail", "rcpt"), SENT, ids=[s[0] for s in SENT]
)
def test_parameters_follow_the_peer(
    name: str,
    extensions: tuple[str, ...],
    recipient: Recipient,
    body: bytes,
    kwargs: dict[str, object],
    mail: str | None,
    rcpt: str | None,
) -> None:
    conn = ready("PIPELINING", *extensions)
    wire = conn.send_mail(SENDER, [recipient], body, **kwargs)  # type: ignore[arg-type]
    lines = wire.decode().split("\r\n")
    if mail is not None:
        assert lines[0] == mail
    if rcpt is not None:
        assert lines[1] == rcpt
    assert lines[2:] == ["DATA", ""]


def test_null_sender() -> None:
    conn = ready("PIPELINING")
    assert conn.send_mail(None, [ASCII_RCPT], b"hi").startswith(b"MAIL FROM:<>\r\n")


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b"", b".\r\n"),
        (b"hi", b"hi\r\n.\r\n"),
        (b"hi\r\n", b"hi\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
        (b"bare\nlf\n.dot", b"bare\r\nlf\r\n..dot\r\n.\r\n"),
        (b"bare\rcr\r\n", b"bare\r\ncr\r\n.\r\n"),
        (b"a\n.\nMAIL FROM:<x@y>\n", b"a\r\n..\r\nMAIL FROM:<x@y>\r\n.\r\n"),  # smuggling stays data
    ],
)
def test_body_wire_form(body: bytes, wire: bytes) -> None:
    assert prepare_message(body).wire == wire


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_the_server_framing_reads_back_what_the_client_meant(body: bytes) -> None:
    reader = DataReader(max_message_bytes=10_000, max_text_line=10_000)
    assert reader.feed(prepare_message(body).wire + b"NEXT") == b"NEXT"
    assert reader.result() == (normalise_line_endings(body), None)
