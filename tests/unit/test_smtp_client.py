"""The client engine against scripted server replies: greeting, EHLO/HELO, pipelined transactions with
per-recipient results, LMTP, AUTH, STARTTLS, timeouts, and a hypothesis check that any server bytes give
events or RemoteProtocolError."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.errors import RemoteProtocolError
from postier.smtp.client.connection import ClientConnection, ClientStateError
from postier.smtp.client.events import (
    AuthResult,
    ClientEvent,
    CommandReply,
    ConnectionClosed,
    ExtensionsKnown,
    Greeting,
    TransactionResult,
)
from postier.smtp.need_data import NEED_DATA

EXTENSIONS = ("PIPELINING", "SIZE 10000", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "AUTH PLAIN LOGIN")
NO_PIPELINING = ("SIZE 10000", "8BITMIME", "ENHANCEDSTATUSCODES")
SENDER = Address("sender", "origin.test")
BODY = b"Subject: hi\r\n\r\nHello.\r\n"


def rcpts(*names: str) -> list[Recipient]:
    return [Recipient(Address(name, "dest.test")) for name in names]


@dataclass
class Run:
    """A client engine, what it sent, and the events it gave while scripted server bytes were fed."""

    conn: ClientConnection
    sent: bytearray = field(default_factory=bytearray)
    events: list[ClientEvent] = field(default_factory=list)

    def feed(self, data: bytes) -> list[ClientEvent]:
        self.conn.receive_data(data)
        new: list[ClientEvent] = []
        while True:
            event = self.conn.next_event()
            self.sent += self.conn.data_to_send()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                break
            assert not isinstance(event, type(NEED_DATA))
            new.append(event)
        self.events += new
        return new

    def call(self, data: bytes) -> None:
        self.sent += data

    def take_sent(self) -> bytes:
        out = bytes(self.sent)
        self.sent.clear()
        return out


def ehlo_reply(extensions: tuple[str, ...]) -> bytes:
    lines = ["mx.test", *extensions]
    last = len(lines) - 1
    return "".join(f"250{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines)).encode()


def greeted(extensions: tuple[str, ...] = EXTENSIONS, *, lmtp: bool = False) -> Run:
    """A connection past the greeting and EHLO."""
    run = Run(ClientConnection(local_hostname="client.test", lmtp=lmtp))
    (greeting,) = run.feed(b"220 mx.test ESMTP\r\n")
    assert isinstance(greeting, Greeting)
    run.call(run.conn.ehlo())
    (known,) = run.feed(ehlo_reply(extensions))
    assert isinstance(known, ExtensionsKnown)
    run.take_sent()
    return run


def only_result(events: list[ClientEvent]) -> TransactionResult:
    (result,) = events
    assert isinstance(result, TransactionResult)
    return result


# --- greeting and hello -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "code", "closed"),
    [
        (b"220 mx.test ESMTP ready\r\n", 220, False),
        (b"220-mx.test first\r\n220 second\r\n", 220, False),
        (b"554 5.7.1 go away\r\n", 554, False),
        (b"421 4.3.2 busy\r\n", 421, True),
    ],
)
def test_greeting(wire: bytes, code: int, closed: bool) -> None:
    run = Run(ClientConnection(local_hostname="client.test"))
    assert run.conn.timeout_s == 300
    (event,) = run.feed(wire)
    assert isinstance(event, Greeting)
    assert event.reply.code == code
    assert run.conn.is_closed is closed


def test_ehlo_extensions_are_parsed() -> None:
    run = Run(ClientConnection(local_hostname="client.test"))
    run.feed(b"220 mx.test\r\n")
    assert run.conn.ehlo() == b"EHLO client.test\r\n"
    wire = ehlo_reply(
        ("PIPELINING", "SIZE 35882577", "AUTH=LOGIN", "AUTH PLAIN LOGIN", "8bitmime", "STARTTLS")
    )
    (event,) = run.feed(wire)
    assert isinstance(event, ExtensionsKnown)
    ext = event.extensions
    assert ext.has("PIPELINING") and ext.has("8BITMIME") and ext.has("starttls")
    assert not ext.has("SMTPUTF8")
    assert ext.max_size == 35882577
    assert ext.auth_mechanisms == {"PLAIN", "LOGIN"}
    assert run.conn.extensions == ext


@pytest.mark.parametrize("refusal", [b"502 5.5.1 no EHLO here\r\n", b"500 what?\r\n", b"550 no\r\n"])
def test_ehlo_refused_falls_back_to_helo(refusal: bytes) -> None:
    run = Run(ClientConnection(local_hostname="client.test"))
    run.feed(b"220 mx.test\r\n")
    run.call(run.conn.ehlo())
    assert run.feed(refusal) == []
    assert run.take_sent() == b"EHLO client.test\r\nHELO client.test\r\n"
    (event,) = run.feed(b"250 mx.test\r\n")
    assert isinstance(event, ExtensionsKnown)
    assert event.verb == "HELO"
    assert event.extensions.keywords == {}


def test_helo_refused_too_is_reported() -> None:
    run = Run(ClientConnection(local_hostname="client.test"))
    run.feed(b"220 mx.test\r\n")
    run.call(run.conn.ehlo())
    run.feed(b"502 no\r\n")
    (event,) = run.feed(b"550 5.7.1 not you\r\n")
    assert isinstance(event, CommandReply)
    assert (event.verb, event.reply.code) == ("HELO", 550)


def test_ehlo_421_closes_without_helo() -> None:
    run = Run(ClientConnection(local_hostname="client.test"))
    run.feed(b"220 mx.test\r\n")
    run.call(run.conn.ehlo())
    (event,) = run.feed(b"421 4.3.2 shutting down\r\n")
    assert isinstance(event, CommandReply) and event.reply.code == 421
    assert run.conn.is_closed
    assert run.take_sent() == b"EHLO client.test\r\n"


# --- transactions -----------------------------------------------------------------------------------

PIPELINED_FLIGHT = (
    b"MAIL FROM:<sender@origin.test> SIZE=23\r\n"
    b"RCPT TO:<a@dest.test>\r\nRCPT TO:<b@dest.test>\r\nRCPT TO:<c@dest.test>\r\nDATA\r\n"
)

# (name, extensions, server chunks, what the client sends after each chunk, outcome codes)
TRANSACTIONS = [
    (
        "one of three refused: only the accepted two get the data, each has its own reply",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n354 go\r\n", b"250 2.0.0 queued\r\n"],
        [BODY + b".\r\n", b""],
        (250, 550, 250),
    ),
    (
        "all refused: no data, RSET closes the open transaction",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n550 no\r\n550 no\r\n551 no\r\n554 5.5.1 no valid recipients\r\n", b"250 reset\r\n"],
        [b"RSET\r\n", b""],
        (550, 550, 551),
    ),
    (
        "all refused yet 354: a lone dot, never the message (RFC 2920 §3.1)",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n550 no\r\n550 no\r\n550 no\r\n354 go\r\n", b"554 no recipients\r\n"],
        [b".\r\n", b""],
        (550, 550, 550),
    ),
    (
        "452 at MAIL: every recipient gets it, nothing else is sent",
        ("PIPELINING", "SIZE 10000"),
        [b"452 4.3.1 disk full\r\n503 no\r\n503 no\r\n503 no\r\n503 no\r\n"],
        [b""],
        (452, 452, 452),
    ),
    (
        "552 at end of data: every accepted recipient gets it",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n250 ok\r\n250 ok\r\n450 busy\r\n354 go\r\n", b"552 5.3.4 too big\r\n"],
        [BODY + b".\r\n", b""],
        (552, 552, 450),
    ),
    (
        "DATA refused after accepted recipients: RSET",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n451 4.3.0 later\r\n", b"250 ok\r\n"],
        [b"RSET\r\n", b""],
        (451, 451, 451),
    ),
    (
        "421 in the middle: the rest of the transaction gets the 421",
        ("PIPELINING", "SIZE 10000"),
        [b"250 ok\r\n250 ok\r\n421 4.3.2 bye\r\n"],
        [b""],
        (421, 421, 421),
    ),
]


@pytest.mark.parametrize(
    ("name", "extensions", "chunks", "replies", "codes"), TRANSACTIONS, ids=[t[0] for t in TRANSACTIONS]
)
def test_pipelined_transaction(
    name: str,
    extensions: tuple[str, ...],
    chunks: list[bytes],
    replies: list[bytes],
    codes: tuple[int, ...],
) -> None:
    run = greeted(extensions)
    assert run.conn.send_mail(SENDER, rcpts("a", "b", "c"), BODY) == PIPELINED_FLIGHT
    for chunk, expected in zip(chunks, replies, strict=True):
        events = run.feed(chunk)
        assert run.take_sent() == expected
    result = only_result(events)
    assert tuple(r.code for r in result.outcomes) == codes
    assert run.conn.is_idle or run.conn.is_closed


def test_each_recipient_keeps_its_own_reply_text() -> None:
    run = greeted()
    run.conn.send_mail(SENDER, rcpts("a", "b"), BODY)
    run.feed(b"250 2.1.0 ok\r\n250 2.1.5 a ok\r\n550 5.1.1 <b@dest.test> unknown\r\n354 go\r\n")
    result = only_result(run.feed(b"250 2.0.0 Ok: queued as X1\r\n"))
    assert [str(r.status) for r in result.outcomes] == ["2.0.0", "5.1.1"]
    assert result.outcomes[1].text == "<b@dest.test> unknown"
    assert result.delivered == tuple(rcpts("a"))


def test_without_pipelining_one_command_at_a_time() -> None:
    run = greeted(NO_PIPELINING)
    assert run.conn.send_mail(SENDER, rcpts("a", "b"), BODY) == b"MAIL FROM:<sender@origin.test> SIZE=23\r\n"
    steps = [
        (b"250 ok\r\n", b"RCPT TO:<a@dest.test>\r\n"),
        (b"550 no\r\n", b"RCPT TO:<b@dest.test>\r\n"),
        (b"250 ok\r\n", b"DATA\r\n"),
        (b"354 go\r\n", BODY + b".\r\n"),
    ]
    for reply, expected in steps:
        assert run.feed(reply) == []
        assert run.take_sent() == expected
    result = only_result(run.feed(b"250 queued\r\n"))
    assert [r.code for r in result.outcomes] == [550, 250]


@pytest.mark.parametrize(
    ("replies", "sent_after", "codes"),
    [
        ([b"550 5.7.1 sender refused\r\n"], b"", (550, 550)),
        (
            [b"250 ok\r\n", b"550 no\r\n", b"550 no\r\n", b"250 reset\r\n"],
            b"RCPT TO:<b@dest.test>\r\nRSET\r\n",
            (550, 550),
        ),
    ],
)
def test_without_pipelining_stops_early(
    replies: list[bytes], sent_after: bytes, codes: tuple[int, ...]
) -> None:
    run = greeted(NO_PIPELINING)
    run.conn.send_mail(SENDER, rcpts("a", "b"), BODY)
    run.take_sent()
    for reply in replies:
        events = run.feed(reply)
    assert run.take_sent().replace(b"RCPT TO:<a@dest.test>\r\n", b"") == sent_after
    assert tuple(r.code for r in only_result(events).outcomes) == codes


def test_lmtp_gives_one_data_reply_per_accepted_recipient() -> None:
    run = greeted(("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"), lmtp=True)
    flight = run.conn.send_mail(SENDER, rcpts("a", "b", "c"), BODY)
    assert flight.count(b"RCPT TO:") == 3
    run.feed(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
    assert run.take_sent() == BODY + b".\r\n"
    assert run.feed(b"250 2.0.0 <a@dest.test> delivered\r\n") == []
    result = only_result(run.feed(b"452 4.2.2 <c@dest.test> mailbox full\r\n"))
    assert [r.code for r in result.outcomes] == [250, 550, 452]
    assert len(result.data_end) == 2


def test_lmtp_greets_with_lhlo_and_has_no_helo_fallback() -> None:
    run = Run(ClientConnection(local_hostname="client.test", lmtp=True))
    run.feed(b"220 lmtp.test\r\n")
    assert run.conn.ehlo() == b"LHLO client.test\r\n"
    (event,) = run.feed(b"500 5.5.1 what\r\n")
    assert isinstance(event, CommandReply) and event.verb == "LHLO"
    assert run.take_sent() == b""


def test_connection_lost_after_the_data_defers_every_recipient() -> None:
    run = greeted()
    run.conn.send_mail(SENDER, rcpts("a", "b"), BODY)
    run.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    result = only_result(run.feed(b""))
    assert [(r.code, str(r.status)) for r in result.outcomes] == [(421, "4.4.2"), (421, "4.4.2")]
    assert run.conn.is_closed


def test_quit_then_close() -> None:
    run = greeted()
    assert run.conn.quit() == b"QUIT\r\n"
    (event,) = run.feed(b"221 2.0.0 bye\r\n")
    assert isinstance(event, CommandReply) and (event.verb, event.reply.code) == ("QUIT", 221)
    run.conn.receive_data(b"")
    assert isinstance(run.conn.next_event(), ConnectionClosed)


def test_unsolicited_421_is_reported() -> None:
    run = greeted()
    (event,) = run.feed(b"421 4.4.2 idle too long\r\n")
    assert isinstance(event, CommandReply) and event.verb == "" and event.reply.code == 421
    assert run.conn.is_closed


def test_one_operation_at_a_time() -> None:
    run = greeted()
    run.conn.send_mail(SENDER, rcpts("a"), BODY)
    with pytest.raises(ClientStateError):
        run.conn.rset()
    fresh = ClientConnection(local_hostname="client.test")
    with pytest.raises(ClientStateError):
        fresh.ehlo()  # before the greeting


# --- timeouts (RFC 5321 §4.5.3.2) ---------------------------------------------------------------------


def test_timeout_follows_the_awaited_reply() -> None:
    run = greeted(NO_PIPELINING)
    assert run.conn.timeout_s is None  # idle
    run.conn.send_mail(SENDER, rcpts("a"), BODY)
    seen = [run.conn.timeout_s]
    for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
        run.feed(reply)
        seen.append(run.conn.timeout_s)
    assert seen == [300, 300, 120, 600]
    assert run.conn.timeouts.data_block_s == 180


# --- AUTH (RFC 4954) --------------------------------------------------------------------------------


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def test_auth_plain() -> None:
    run = greeted()
    line = run.conn.auth_plain("user", "pa ss")
    verb, mech, token = line.split()
    assert (verb, mech) == (b"AUTH", b"PLAIN")
    assert base64.b64decode(token) == b"\0user\0pa ss"
    (event,) = run.feed(b"235 2.7.0 ok\r\n")
    assert isinstance(event, AuthResult) and event.reply.code == 235 and event.mechanism == "PLAIN"


def test_auth_login_answers_each_challenge() -> None:
    run = greeted()
    assert run.conn.auth_login("user", "secret") == b"AUTH LOGIN\r\n"
    assert run.feed(b"334 VXNlcm5hbWU6\r\n") == []
    assert run.take_sent() == b64("user") + b"\r\n"
    assert run.feed(b"334 UGFzc3dvcmQ6\r\n") == []
    assert run.take_sent() == b64("secret") + b"\r\n"
    (event,) = run.feed(b"535 5.7.8 bad credentials\r\n")
    assert isinstance(event, AuthResult) and event.reply.code == 535


def test_auth_extra_challenge_is_cancelled() -> None:
    run = greeted()
    run.conn.auth_plain("user", "secret")
    assert run.feed(b"334 \r\n") == []
    assert run.take_sent() == b"*\r\n"
    (event,) = run.feed(b"501 5.7.0 cancelled\r\n")
    assert isinstance(event, AuthResult) and event.reply.code == 501


def test_auth_mechanism_not_offered_sends_nothing() -> None:
    run = greeted(("PIPELINING",))
    assert run.conn.auth_login("user", "secret") == b""
    event = run.conn.next_event()
    assert isinstance(event, AuthResult) and event.is_local
    assert (event.reply.code, str(event.reply.status)) == (504, "5.7.4")


# --- STARTTLS (RFC 3207) ------------------------------------------------------------------------------


def test_starttls_discards_injected_bytes_and_forgets_extensions() -> None:
    run = greeted((*EXTENSIONS, "STARTTLS"))
    assert run.conn.starttls() == b"STARTTLS\r\n"
    (event,) = run.feed(b"220 2.0.0 go ahead\r\n250-injected\r\n")
    assert isinstance(event, CommandReply) and event.reply.code == 220
    run.feed(b"250 more plaintext\r\n")  # before the handshake: never read
    run.conn.tls_established()
    assert run.conn.is_tls and run.conn.extensions is None
    with pytest.raises(ClientStateError):
        run.conn.send_mail(SENDER, rcpts("a"), BODY)  # EHLO again first
    assert run.conn.ehlo() == b"EHLO client.test\r\n"
    (known,) = run.feed(ehlo_reply(("PIPELINING", "AUTH PLAIN")))
    assert isinstance(known, ExtensionsKnown) and not known.extensions.has("STARTTLS")


def test_starttls_not_offered_is_a_local_reply() -> None:
    run = greeted()
    assert run.conn.starttls() == b""
    event = run.conn.next_event()
    assert isinstance(event, CommandReply) and event.is_local and event.reply.code == 454


# --- any server bytes: events or RemoteProtocolError ----------------------------------------------------


def _reply_wire(code: str, texts: list[str]) -> bytes:
    last = len(texts) - 1
    return "".join(f"{code}{' ' if i == last else '-'}{t}\r\n" for i, t in enumerate(texts)).encode()


_REPLY = st.builds(
    _reply_wire,
    st.sampled_from(["220", "250", "250", "250", "235", "334", "354", "421", "452", "500", "550", "554"]),
    st.lists(
        st.sampled_from(["", "ok", "2.0.0 ok", "5.1.1 no", "PIPELINING", "SIZE 10", "AUTH PLAIN", "DSN"]),
        min_size=1,
        max_size=4,
    ),
)
_CHUNK = st.one_of(*[_REPLY] * 8, st.binary(max_size=40))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(_CHUNK, max_size=25), lmtp=st.booleans(), eof=st.booleans())
def test_any_server_bytes_give_events_or_remote_protocol_error(
    chunks: list[bytes], lmtp: bool, eof: bool
) -> None:
    conn = ClientConnection(local_hostname="client.test", lmtp=lmtp, max_reply_line=100, max_reply_lines=8)
    steps = 0  # local results (a refused AUTH or message) come at once: bound the walk
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                conn.data_to_send()
                if isinstance(event, ConnectionClosed):
                    return
                if conn.is_idle and not conn.is_closed and steps < 20:
                    steps += 1
                    _next_step(conn, event)
    except RemoteProtocolError as exc:
        assert exc.reply.code == 451


def _next_step(conn: ClientConnection, event: object) -> None:
    """Walk the engine through the dialogue, so random replies reach every state."""
    if isinstance(event, Greeting):
        conn.ehlo()
    elif isinstance(event, ExtensionsKnown | CommandReply | AuthResult | TransactionResult):
        if conn.extensions is None:
            conn.ehlo()
        elif isinstance(event, TransactionResult):
            conn.auth_login("u", "p")
        else:
            conn.send_mail(SENDER, rcpts("a", "b"), b"x\r\n")


def test_credentials_never_show_in_the_engine_state() -> None:
    run = greeted()
    run.conn.auth_login("user", "secret")
    assert b64("secret").decode() not in repr(vars(run.conn))
