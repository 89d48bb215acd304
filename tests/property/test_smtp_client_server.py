"""The client engine talks to the server engine (h11's ConnectionPair, tests/helpers.py style): random
envelopes and bodies; the server receives exactly what the client meant, and each side agrees on
which recipients were accepted."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.address import Address
from postier.mail.envelope import Notify, Recipient
from postier.mail.replies import S, greeting, queued
from postier.mail.reply import Reply
from postier.smtp.client.connection import ClientConnection
from postier.smtp.client.events import ClientEvent, CommandReply, ExtensionsKnown, Greeting, TransactionResult
from postier.smtp.client.message import normalise_line_endings
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    NEED_DATA,
    Answered,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageReceived,
    RcptTo,
)
from postier.smtp.server.settings import EngineSettings


@dataclass
class ConnectionPair:
    """A client engine and a server engine joined by an in-memory wire. The server's driver accepts
    every recipient except those whose local part starts with ``x``."""

    client: ClientConnection = field(default_factory=lambda: ClientConnection(local_hostname="client.test"))
    server: ServerConnection = field(default_factory=lambda: ServerConnection(EngineSettings("mx.test")))
    received: list[MessageReceived] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.to_client = self.server.send(greeting("mx.test"))

    def client_sends(self, data: bytes) -> list[ClientEvent]:
        """Write client bytes, then shuttle both ways until neither side has anything to say."""
        to_server, events = data, []
        while to_server or self.to_client:
            if to_server:
                self.server.receive_data(to_server)
                to_server = b""
                self._serve()
            if self.to_client:
                self.client.receive_data(self.to_client)
                self.to_client = b""
                while (event := self.client.next_event()) is not NEED_DATA:
                    assert not isinstance(event, type(NEED_DATA))
                    events.append(event)
                to_server = self.client.data_to_send()
        return events

    def _serve(self) -> None:
        while (event := self.server.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            self.to_client += self.server.send(self._answer(event))

    def _answer(self, event: Event) -> Reply:
        if isinstance(event, Answered):
            return event.reply
        if isinstance(event, Hello):
            return self.server.ehlo_reply()
        if isinstance(event, MailFrom):
            return S.SENDER_OK
        if isinstance(event, RcptTo):
            refused = event.recipient.address.local_part.startswith("x")
            return S.UNKNOWN_USER if refused else S.RECIPIENT_OK
        if isinstance(event, DataStart):
            return S.START_DATA
        if isinstance(event, MessageReceived):
            self.received.append(event)
            return queued(f"Q{len(self.received)}")
        raise AssertionError(f"unexpected server event {event!r}")


_LOCAL = st.text("abcdefghijklmnopqrstuvwxyz0123456789.+=-", min_size=1, max_size=12).filter(
    lambda s: not (s.startswith(".") or s.endswith(".") or ".." in s)
)
_NOTIFY = st.one_of(
    st.none(),
    st.just(frozenset({Notify.NEVER})),
    st.sets(st.sampled_from([Notify.SUCCESS, Notify.FAILURE, Notify.DELAY]), min_size=1).map(frozenset),
)
_RECIPIENT = st.builds(
    lambda local, notify, with_orcpt: Recipient(
        Address(local, "dest.test"), notify, f"rfc822;{local}@dest.test" if with_orcpt else None
    ),
    _LOCAL,
    _NOTIFY,
    st.booleans(),
)
# Bodies of short lines (the server refuses lines over 1000 octets) with any line ends and bytes.
_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])
_BODY = st.lists(st.tuples(st.binary(max_size=60), _ENDS), max_size=12).map(
    lambda lines: b"".join(line + end for line, end in lines)
)


@settings(max_examples=150, deadline=None)
@given(
    sender=st.one_of(st.none(), _LOCAL.map(lambda local: Address(local, "origin.test"))),
    transactions=st.lists(
        st.tuples(st.lists(_RECIPIENT, min_size=1, max_size=5), _BODY), min_size=1, max_size=3
    ),
)
def test_server_receives_what_the_client_sent(
    sender: Address | None, transactions: list[tuple[list[Recipient], bytes]]
) -> None:
    pair = ConnectionPair()
    (greeted,) = pair.client_sends(b"")
    assert isinstance(greeted, Greeting) and greeted.reply.code == 220
    (known,) = pair.client_sends(pair.client.ehlo())
    assert isinstance(known, ExtensionsKnown) and known.extensions.has("PIPELINING")
    for recipients, body in transactions:
        before = len(pair.received)
        (result,) = pair.client_sends(pair.client.send_mail(sender, recipients, body))
        assert isinstance(result, TransactionResult) and not result.is_local
        wanted = [r for r in recipients if not r.address.local_part.startswith("x")]
        assert list(result.delivered) == wanted
        if not wanted:
            assert len(pair.received) == before  # no data for a transaction nobody accepted
            assert result.reset is not None and result.reset.code == 250
            continue
        message = pair.received[-1]
        assert message.body == normalise_line_endings(body)
        assert message.sender == sender
        assert list(message.recipients) == wanted
        assert message.params.size == len(message.body)
    (bye,) = pair.client_sends(pair.client.quit())
    assert isinstance(bye, CommandReply) and bye.reply.code == 221
    assert pair.client.is_closed and pair.server.is_closed
