"""The server engine, command by command: code AND enhanced status for every refusal."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from postier.mail.address import Address
from postier.mail.replies import S, greeting, queued
from postier.mail.reply import Reply
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    NEED_DATA,
    Answered,
    AuthCancelled,
    AuthResponse,
    AuthStart,
    ChunkReceived,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageReceived,
    RcptTo,
    Rejected,
    StartTls,
)
from postier.smtp.server.settings import EngineSettings

Decide = Callable[[ServerConnection, Event], Reply]


def accept_all(conn: ServerConnection, event: Event) -> Reply:
    """The driver that says yes to everything (like the transcripts' default)."""
    if isinstance(event, Answered):
        return event.reply
    if isinstance(event, Hello):
        return conn.ehlo_reply() if event.verb == "EHLO" else Reply(250, None, "mx")
    answers: dict[type, Reply] = {
        MailFrom: S.SENDER_OK,
        RcptTo: S.RECIPIENT_OK,
        DataStart: S.START_DATA,
        MessageReceived: queued("TESTID"),
        StartTls: S.TLS_READY,
        AuthStart: Reply(334, None, ""),
        AuthResponse: S.AUTH_OK,
    }
    return answers[type(event)]


class Session:
    """A greeted engine and a driver; ``feed`` returns (event, reply) pairs."""

    def __init__(self, decide: Decide = accept_all, **settings: object) -> None:
        self.conn = ServerConnection(EngineSettings(**settings))  # type: ignore[arg-type]
        self.decide = decide
        self.conn.send(greeting("mx"))

    def feed(self, data: bytes) -> list[tuple[Event, Reply]]:
        self.conn.receive_data(data)
        return self.pump()

    def pump(self) -> list[tuple[Event, Reply]]:
        out = []
        while (event := self.conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            reply = self.decide(self.conn, event)
            self.conn.send(reply)
            out.append((event, reply))
        return out

    def say(self, *lines: str) -> str:
        """Send command lines; the last reply as ``"code status"``."""
        pairs = self.feed(b"".join(line.encode() + b"\r\n" for line in lines))
        reply = pairs[-1][1]
        return f"{reply.code} {reply.status}"


EHLO, MAIL, RCPT = "EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>"
TABLE: list[tuple[dict[str, object], list[str], str, str]] = [
    ({}, [], "FOO", "500 5.5.1"),
    ({}, [], "MAIL FROM:<a@example.org>", "503 5.5.1"),
    ({}, [EHLO], "RCPT TO:<b@example.org>", "503 5.5.1"),
    ({}, [EHLO, MAIL], "MAIL FROM:<a@example.org>", "503 5.5.1"),
    ({}, [EHLO], "DATA", "503 5.5.1"),
    ({}, [EHLO, MAIL], "DATA", "554 5.5.1"),
    ({}, [EHLO, MAIL, RCPT], "DATA extra", "501 5.5.2"),
    ({}, [EHLO, MAIL, RCPT], "DATA", "354 None"),
    ({}, [EHLO, "MAIL FROM:<a@example.org> BODY=BINARYMIME", RCPT], "DATA", "503 5.5.1"),
    ({}, [], "EHLO", "501 5.5.2"),
    ({}, [], "HELO", "501 5.5.2"),
    ({}, [], "EHLO odd_name", "250 None"),
    ({}, [], "VRFY someone", "252 2.5.0"),
    ({}, [], "VRFY", "501 5.5.2"),
    ({}, [], "EXPN list", "502 5.5.1"),
    ({}, [], "HELP", "214 2.0.0"),
    ({}, [], "HELP MAIL", "214 2.0.0"),
    ({}, [], "NOOP", "250 2.0.0"),
    ({}, [], "RSET", "250 2.0.0"),
    ({}, [], "RSET x", "501 5.5.2"),
    ({}, [], "QUIT", "221 2.0.0"),
    ({}, [], "QUIT now", "501 5.5.2"),
    ({}, [], "STARTTLS", "502 5.5.1"),
    ({"can_starttls": True}, [], "STARTTLS", "220 2.0.0"),
    ({"can_starttls": True}, [], "STARTTLS now", "501 5.5.2"),
    ({"can_starttls": True}, [EHLO, MAIL], "STARTTLS", "503 5.5.1"),
    ({"can_starttls": True, "is_tls": True}, [], "STARTTLS", "503 5.5.1"),
    ({}, [EHLO], "AUTH PLAIN", "502 5.5.1"),
    ({"auth_mechanisms": ("PLAIN",)}, [EHLO], "AUTH PLAIN", "538 5.7.11"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [], "AUTH PLAIN", "503 5.5.1"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, ["HELO x"], "AUTH PLAIN", "503 5.5.1"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [EHLO, MAIL], "AUTH PLAIN", "503 5.5.1"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [EHLO], "AUTH GSSAPI", "504 5.5.4"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [EHLO], "AUTH PLAIN !!", "501 5.5.2"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [EHLO], "AUTH", "501 5.5.2"),
    ({"auth_mechanisms": ("PLAIN",), "is_tls": True}, [EHLO], "AUTH plain", "334 None"),
    ({"auth_mechanisms": ("PLAIN",), "auth_requires_tls": False}, [EHLO], "AUTH PLAIN", "334 None"),
    ({"mail_requires_auth": True}, [EHLO], MAIL, "530 5.7.0"),
    ({"max_message_bytes": 10}, [EHLO], "MAIL FROM:<a@b> SIZE=11", "552 5.3.4"),
    ({}, [EHLO], "MAIL FROM:<a@b> FOO=1", "555 5.5.4"),
    ({}, [EHLO], "MAIL FROM:<a@b> SIZE=x", "501 5.5.4"),
    ({}, [EHLO], "MAIL FROM:<a@b", "501 5.1.7"),
    ({}, [EHLO, MAIL], "RCPT TO:<b@", "501 5.1.3"),
    ({}, [EHLO, MAIL], "RCPT TO:<ü@example.org>", "553 5.6.7"),
    ({}, [EHLO, "MAIL FROM:<a@b> SMTPUTF8"], "RCPT TO:<ü@example.org>", "250 2.1.5"),
    ({"max_recipients": 1}, [EHLO, MAIL, RCPT], RCPT, "452 4.5.3"),
    ({}, [EHLO], "BDAT x", "501 5.5.2"),
]


@pytest.mark.parametrize(("settings", "setup", "command", "expected"), TABLE)
def test_command_replies(settings: dict[str, object], setup: list[str], command: str, expected: str) -> None:
    session = Session(**settings)
    if setup:
        session.say(*setup)
    assert session.say(command) == expected


def test_early_talker_is_refused_and_closed() -> None:
    conn = ServerConnection(EngineSettings())
    conn.receive_data(b"EHLO too.early\r\n")
    assert conn.next_event() is NEED_DATA  # the greeting comes first
    conn.send(greeting("mx"))
    event = conn.next_event()
    assert isinstance(event, Rejected)
    assert event.close
    assert (event.reply.code, str(event.reply.status)) == (554, "5.5.0")
    conn.send(event.reply)
    assert conn.is_closed


def test_a_554_greeting_allows_only_quit() -> None:
    conn = ServerConnection(EngineSettings())
    conn.send(Reply(554, None, "no service"))
    session = Session()
    session.conn = conn
    assert session.say("EHLO x") == "503 5.5.1"
    assert session.say("QUIT") == "221 2.0.0"
    assert conn.is_closed


def test_too_many_errors_closes_with_421() -> None:
    session = Session(max_errors=3)
    pairs = session.feed(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    codes = [(reply.code, str(reply.status)) for _, reply in pairs]
    assert codes == [(500, "5.5.1")] * 3 + [(421, "4.7.0")]
    assert session.conn.is_closed


def test_transient_refusals_do_not_count_as_errors() -> None:
    session = Session(max_errors=2, max_recipients=1)
    session.say(EHLO, MAIL, RCPT)
    for _ in range(5):
        assert session.say(RCPT) == "452 4.5.3"
    assert not session.conn.is_closed


def test_any_421_closes_even_unsolicited() -> None:
    session = Session()
    session.conn.receive_data(b"NOOP\r\n")
    assert session.conn.send(S.TIMEOUT).startswith(b"421 4.4.2")
    assert session.conn.is_closed
    assert session.conn.next_event() is NEED_DATA


def test_sending_without_an_event_is_a_driver_bug() -> None:
    session = Session()
    with pytest.raises(RuntimeError, match="without an event"):
        session.conn.send(S.OK)


def test_peer_close_and_quit_end_the_session() -> None:
    session = Session()
    session.conn.receive_data(b"")
    assert session.conn.is_closed
    quitter = Session()
    assert quitter.feed(b"QUIT\r\nNOOP\r\n")[-1][1].code == 221
    assert quitter.feed(b"NOOP\r\n") == []


def test_events_wait_for_the_previous_reply() -> None:
    """RFC 2920: pipelined commands are answered one at a time, in order."""
    session = Session()
    session.conn.receive_data(b"NOOP\r\nRSET\r\n")
    first = session.conn.next_event()
    assert session.conn.next_event() is NEED_DATA
    assert isinstance(first, Answered)
    session.conn.send(first.reply)
    assert isinstance(session.conn.next_event(), Answered)


def test_commands_pipelined_after_starttls_are_discarded() -> None:
    """CVE-2011-0411: plaintext pipelined after STARTTLS must not run inside the TLS session."""
    session = Session(can_starttls=True)
    pairs = session.feed(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    assert isinstance(pairs[-1][0], StartTls)
    session.conn.receive_data(b"RCPT TO:<injected@example.org>\r\n")  # before the handshake ends
    assert session.conn.next_event() is NEED_DATA
    session.conn.tls_established()
    assert session.conn.next_event() is NEED_DATA
    assert session.say("MAIL FROM:<a@example.org>") == "503 5.5.1"  # EHLO is needed again


def test_tls_established_resets_the_session() -> None:
    session = Session(can_starttls=True, auth_mechanisms=("PLAIN",))
    assert "STARTTLS" in session.conn.ehlo_reply().text
    assert "AUTH" not in session.conn.ehlo_reply().text
    session.say("EHLO x", "STARTTLS")
    session.conn.tls_established()
    assert session.conn.is_tls
    assert session.conn.helo_name is None
    text = session.conn.ehlo_reply().text
    assert "STARTTLS" not in text
    assert text.endswith("AUTH PLAIN")
    assert session.say("STARTTLS") == "503 5.5.1"


def test_ehlo_reply_lists_the_extensions() -> None:
    conn = ServerConnection(EngineSettings(hostname="mx.example", max_message_bytes=1234))
    reply = conn.ehlo_reply()
    assert (reply.code, reply.status) == (250, None)
    assert reply.lines() == [
        "mx.example",
        "PIPELINING",
        "SIZE 1234",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
    ]
    assert conn.ehlo_reply("other.example").lines()[0] == "other.example"


def auth_driver(conn: ServerConnection, event: Event) -> Reply:
    if isinstance(event, AuthStart):
        return S.AUTH_OK if event.initial_response == "AHUAcA==" else Reply(334, None, "")
    if isinstance(event, AuthResponse):
        return S.AUTH_OK if event.data == "AHUAcA==" else S.AUTH_FAILED
    return accept_all(conn, event)


def test_auth_exchange_cancel_failure_success() -> None:
    session = Session(auth_driver, auth_mechanisms=("PLAIN", "LOGIN"), is_tls=True)
    session.say(EHLO)
    pairs = session.feed(b"AUTH PLAIN\r\n*\r\n")
    assert isinstance(pairs[-1][0], AuthCancelled)
    assert (pairs[-1][1].code, str(pairs[-1][1].status)) == (501, "5.7.0")
    pairs = session.feed(b"AUTH PLAIN\r\nbm9wZQ==\r\n")
    assert pairs[-1][0] == AuthResponse("bm9wZQ==")
    assert pairs[-1][1].code == 535
    assert not session.conn.is_authenticated
    pairs = session.feed(b"AUTH PLAIN =\r\nAHUAcA==\r\n")
    assert pairs[0][0] == AuthStart("PLAIN", "=")
    assert session.conn.is_authenticated
    assert session.say("AUTH PLAIN AHUAcA==") == "503 5.5.1"


def test_auth_lines_may_be_long_but_not_too_long() -> None:
    session = Session(auth_driver, auth_mechanisms=("PLAIN",), is_tls=True)
    session.say(EHLO)
    session.say("AUTH PLAIN")
    assert session.say("A" * 12286) == "535 5.7.8"  # 12288 with CRLF: allowed (RFC 4954 §4)
    session.say("AUTH PLAIN")
    assert session.say("A" * 12287) == "500 5.5.6"
    assert session.say("NOOP") == "250 2.0.0"  # the exchange is over


@pytest.mark.parametrize(("length", "expected"), [(512, "250 2.0.0"), (513, "500 5.5.6")])
def test_command_line_limit_counts_the_crlf(length: int, expected: str) -> None:
    assert Session().say("NOOP " + "x" * (length - 7)) == expected


def test_overlong_line_tail_is_never_a_command() -> None:
    session = Session()
    session.conn.receive_data(b"NOOP " + b"x" * 600)
    assert session.conn.next_event() is NEED_DATA
    pairs = session.feed(b"xx QUIT\r\nNOOP\r\n")
    assert [(r.code, str(r.status)) for _, r in pairs] == [(500, "5.5.6"), (250, "2.0.0")]
    assert not session.conn.is_closed


@pytest.mark.parametrize("line", [b"NOOP\n", b"NOOP\r\r\n", b"NO\rOP\r\n"])
def test_bare_line_endings_in_commands(line: bytes) -> None:
    reply = Session().feed(line)[-1][1]
    assert (reply.code, str(reply.status)) == (500, "5.5.2")


def refuse_second_recipient(conn: ServerConnection, event: Event) -> Reply:
    if isinstance(event, RcptTo) and event.recipient.address.local_part == "nobody":
        return S.UNKNOWN_USER
    return accept_all(conn, event)


def test_message_carries_the_transaction_with_accepted_recipients_only() -> None:
    session = Session(refuse_second_recipient)
    session.say(EHLO, "MAIL FROM:<a@example.org> BODY=8BITMIME", RCPT, "RCPT TO:<nobody@example.org>")
    pairs = session.feed(b"RCPT TO:<c@example.org>\r\nDATA\r\nhi\r\n.\r\n")
    message = pairs[-1][0]
    assert isinstance(message, MessageReceived)
    assert message.body == b"hi\r\n"
    assert message.sender == Address("a", "example.org")
    assert str(message.params.body) == "8BITMIME"
    assert [str(r.address) for r in message.recipients] == ["b@example.org", "c@example.org"]
    assert session.say(RCPT) == "503 5.5.1"  # the transaction is over


def test_reading_data_flag_and_big_message_in_pieces() -> None:
    session = Session()
    session.say(EHLO, MAIL, RCPT, "DATA")
    assert session.conn.is_reading_data
    body = (b"y" * 998 + b"\r\n") * 100  # 100 kB
    for start in range(0, len(body), 4096):
        assert session.feed(body[start : start + 4096]) == []
    message = session.feed(b".\r\n")[-1][0]
    assert isinstance(message, MessageReceived)
    assert message.body == body
    assert not session.conn.is_reading_data


def test_oversized_message_then_the_session_goes_on() -> None:
    session = Session(max_message_bytes=100)
    session.say(EHLO, MAIL, RCPT, "DATA")
    assert session.feed(b"z" * 998 + b"\r\n") == []
    pairs = session.feed(b"MAIL FROM:<x@y>\r\n.\r\nNOOP\r\n")
    assert [(r.code, str(r.status)) for _, r in pairs] == [(552, "5.3.4"), (250, "2.0.0")]


def test_bdat_chunks_make_one_message() -> None:
    session = Session()
    session.say(EHLO, MAIL, RCPT)
    pairs = session.feed(b"BDAT 3\r\n\x00\r\nBDAT 2 LAST\r\n\n.")
    assert isinstance(pairs[0][0], ChunkReceived)
    assert pairs[0][0].octets == 3
    assert str(pairs[0][1]) == "250 2.0.0 3 octets received"
    message = pairs[1][0]
    assert isinstance(message, MessageReceived)
    assert message.body == b"\x00\r\n\n."  # binary: no unstuffing, no line-ending checks


def test_lmtp_is_not_implemented_yet() -> None:
    with pytest.raises(NotImplementedError):
        ServerConnection(EngineSettings(lmtp=True))
