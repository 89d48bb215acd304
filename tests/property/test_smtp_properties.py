"""Hypothesis properties of the server engine and its framing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.replies import S, greeting, queued
from postier.mail.reply import Reply
from postier.smtp.framing import DataReader, dot_stuff, dot_unstuff
from postier.smtp.grammar import xtext_decode, xtext_encode
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    NEED_DATA,
    Answered,
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MessageReceived,
    StartTls,
)
from postier.smtp.server.settings import EngineSettings

SETTINGS = EngineSettings(
    max_message_bytes=500,
    max_command_line=80,
    max_text_line=100,
    max_errors=1000,
    can_starttls=True,
    auth_mechanisms=("PLAIN",),
    auth_requires_tls=False,
)

FRAGMENTS = st.sampled_from(
    [
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b>\r\n",
        b"RCPT TO:<c@d>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 1 LAST\r\n",
        b".\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"RSET\r\n",
        b"AUTH PLAIN\r\n",
        b"*\r\n",
        b"STARTTLS\r\n",
        b"QUIT\r\n",
    ]
)
INPUT = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=12)), max_size=25).map(b"".join)


def decide(conn: ServerConnection, event: Event) -> Reply:
    if isinstance(event, Answered):
        return event.reply
    if isinstance(event, Hello):
        return conn.ehlo_reply()
    if isinstance(event, DataStart):
        return S.START_DATA
    if isinstance(event, MessageReceived):
        return queued("PROP")
    if isinstance(event, StartTls):
        return S.TLS_READY
    if isinstance(event, AuthStart | AuthResponse):
        return Reply(334, None, "")
    return S.OK


def play(chunks: list[bytes], *, handshake: bool = True) -> list[tuple[str, str]]:
    """Feed the chunks in order; the (event, reply) transcript. Without ``handshake`` the TLS
    handshake after STARTTLS never completes (so no later chunk can pass for encrypted bytes)."""
    conn = ServerConnection(SETTINGS)
    conn.send(greeting("prop"))
    out: list[tuple[str, str]] = []
    for chunk in chunks:
        if conn.is_closed:
            break
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            reply = decide(conn, event)
            out.append((repr(event), str(reply)))
            conn.send(reply)
            if isinstance(event, StartTls) and handshake:
                conn.tls_established()
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@settings(max_examples=150, deadline=None)
@given(INPUT, st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_in_any_split_never_raise(data: bytes, cuts: list[int]) -> None:
    play(split(data, cuts))


@settings(max_examples=150, deadline=None)
@given(INPUT, st.lists(st.integers(min_value=0), max_size=10))
def test_splitting_the_input_does_not_change_the_events(data: bytes, cuts: list[int]) -> None:
    assert play(split(data, cuts), handshake=False) == play([data], handshake=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"..", b"\r\n", b" ", b"x.y"]), max_size=30).map(b"".join))
def test_dot_stuffing_round_trips(body: bytes) -> None:
    expected = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    wire = dot_stuff(body)
    assert dot_unstuff(wire[:-3]) == expected
    reader = DataReader(max_message_bytes=10_000, max_text_line=10_000)
    assert reader.feed(wire + b"NEXT") == b"NEXT"
    assert reader.result() == (expected, None)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_xtext_round_trips(text: str) -> None:
    encodable = "".join(c for c in text if ord(c) < 256)
    assert xtext_decode(xtext_encode(encodable)) == encodable
