"""Reading replies on the client side: multi-line replies, enhanced status codes, malformed and hostile
input (RemoteProtocolError, bounded memory)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.errors import RemoteProtocolError
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.connection import ClientConnection
from postier.smtp.client.replies import ReplyReader, parse_extensions

# (wire, the one reply it is)
GOOD = [
    (b"250 ok\r\n", Reply(250, None, "ok")),
    (b"250\r\n", Reply(250, None, "")),
    (b"250 \r\n", Reply(250, None, "")),
    (b"250-first\r\n250-\r\n250 last\r\n", Reply(250, None, "first\n\nlast")),
    (b"250 2.1.5 Recipient ok\r\n", Reply(250, EnhancedStatus(2, 1, 5), "Recipient ok")),
    (
        b"550-5.1.1 no such\r\n550 5.1.1 user here\r\n",
        Reply(550, EnhancedStatus(5, 1, 1), "no such\nuser here"),
    ),
    (b"550 5.1.1\r\n", Reply(550, EnhancedStatus(5, 1, 1), "")),
    # a status whose class does not match the code is only text (tolerant, RFC 3463 §2 class rule)
    (b"250 5.1.1 odd\r\n", Reply(250, None, "5.1.1 odd")),
    (b"451 4.7.0\tTab is text\r\n", Reply(451, None, "4.7.0\tTab is text")),
    (b"250 ok\n", Reply(250, None, "ok")),  # bare LF line end: accepted from old servers
    ("250 Grüße\r\n".encode(), Reply(250, None, "Grüße")),  # UTF-8 text (RFC 6531)
    (b"334 VXNlcm5hbWU6\r\n", Reply(334, None, "VXNlcm5hbWU6")),
]


@pytest.mark.parametrize(("wire", "reply"), GOOD)
def test_good_replies(wire: bytes, reply: Reply) -> None:
    assert ReplyReader().feed(wire) == [reply]


@pytest.mark.parametrize(("wire", "reply"), GOOD)
def test_replies_split_at_every_byte(wire: bytes, reply: Reply) -> None:
    reader = ReplyReader()
    out = [r for i in range(len(wire)) for r in reader.feed(wire[i : i + 1])]
    assert out == [reply]
    assert not reader.has_partial


BAD = [
    (b"hello\r\n", "Malformed"),
    (b"25\r\n", "Malformed"),
    (b"2500 x\r\n", "Malformed"),
    (b"600 x\r\n", "Malformed"),
    (b"199 x\r\n", "Malformed"),
    (b"-250 x\r\n", "Malformed"),
    (b"250_x\r\n", "Malformed"),
    (b"250-a\r\n251 b\r\n", "Mixed"),
    (b"250 \xff\xfe\r\n", "UTF-8"),
    (b"250 a\rb\r\n", "Bare CR"),
    (b"250 a\x00b\r\n", "Control"),
    (b"250 a\x1bb\r\n", "Control"),
    (b"250 " + b"x" * 3000 + b"\r\n", "too long"),
    (b"250 " + b"x" * 3000, "too long"),  # no line end yet: still bounded
    (b"250-x\r\n" * 101, "Too many lines"),
]


@pytest.mark.parametrize(("wire", "why"), BAD)
def test_malformed_replies_raise_remote_protocol_error(wire: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        ReplyReader().feed(wire)
    assert why.lower() in info.value.reply.text.lower()
    assert (info.value.reply.code, str(info.value.reply.status)) == (451, "4.5.0")
    assert info.value.close


def test_unexpected_reply_is_a_protocol_error() -> None:
    conn = ClientConnection(local_hostname="client.test")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"220 hi\r\n250 nobody asked\r\n")


def test_a_flood_of_replies_is_refused_not_buffered() -> None:
    conn = ClientConnection(local_hostname="client.test")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"220 hi\r\n" + b"421 bye\r\n" * 10_000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_reader_never_raises_anything_else(data: bytes) -> None:
    reader = ReplyReader(max_line=64, max_lines=4)
    try:
        for reply in reader.feed(data):
            assert 200 <= reply.code <= 599
    except RemoteProtocolError:
        pass


@pytest.mark.parametrize(
    ("lines", "keywords"),
    [
        (["PIPELINING", "SIZE 1000"], {"PIPELINING": "", "SIZE": "1000"}),
        (["auth=LOGIN", "AUTH PLAIN LOGIN"], {"AUTH": "LOGIN PLAIN LOGIN"}),
        (["8bitmime", "  DSN  "], {"8BITMIME": "", "DSN": ""}),
        (["", "-bad", "X_BAD", "OK-1 x"], {"OK-1": "x"}),  # unreadable lines are skipped
    ],
)
def test_ehlo_keywords(lines: list[str], keywords: dict[str, str]) -> None:
    assert parse_extensions(Reply(250, None, "\n".join(["mx.test", *lines]))).keywords == keywords


@pytest.mark.parametrize(("size", "limit"), [("1000", 1000), ("0", None), ("", None), ("big", None)])
def test_size_limit(size: str, limit: int | None) -> None:
    extensions = parse_extensions(Reply(250, None, f"mx.test\nSIZE {size}".rstrip()))
    assert extensions.max_size == limit
