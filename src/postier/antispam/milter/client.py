"""One milter conversation per message, at the end of data (protocol.py has the packets).

Postier replays the whole SMTP transaction to the filter once the message is in: option negotiation,
connect, HELO, MAIL, each RCPT, DATA, the header fields, end of headers, the body in chunks of at most
64 KiB, end of message; then ``Q`` (quit). Steps the filter declined in the negotiation are left out,
and replies it said it would not send (``SMFIP_NR_*``) are not awaited. Any final verdict before the
end of message (reject at RCPT, say) ends the conversation with that verdict: one refusal of the
message. Every read has ``timeout_s``; a ``p`` (progress) reply restarts it.

The result is a ``MilterOutcome``: the verdict letter (``a`` accept / ``c`` continue, ``r`` reject,
``t`` tempfail, ``d`` discard, ``y`` a reply of the filter's own) and the modifications collected at
the end of message (headers added, inserted or changed, the body replaced, quarantine).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from postier.antispam.milter.protocol import (
    MAX_CHUNK,
    MilterParser,
    MilterProtocolError,
    Protocol,
    Response,
    encode,
    encode_connect,
    encode_macros,
    encode_optneg,
)

__all__ = ["MilterOutcome", "MilterTransaction", "run_milter"]

_NONE = Protocol(0)


@dataclass(frozen=True, slots=True)
class MilterTransaction:
    """What the filter is told of the session and the message."""

    hostname: str
    """Our host name (macro ``j``)."""
    client_ip: str
    client_port: int
    client_name: str
    """The client's host name as we know it (its address in brackets when unknown)."""
    helo: str
    sender: str
    """``<address>`` or ``<>``."""
    recipients: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    """The header fields, ``(name, raw value)``: the value as received after the colon, folding kept."""
    body: bytes
    queue_id: str = ""
    auth_user: str | None = None


@dataclass(slots=True)
class MilterOutcome:
    verdict: str = "c"
    """``a``/``c`` accept, ``r`` reject, ``t`` tempfail, ``d`` discard, ``y`` the filter's own reply."""
    reply: str = ""
    """The filter's reply text (``y``), ``"550 5.7.1 …"``."""
    added: list[tuple[str, str]] = field(default_factory=list)
    """Header fields to add (``h``, and ``i`` inserted fields), in the order the filter sent them."""
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    """``(index, name, value)``: the ``index``-th field called ``name`` gets ``value`` ('' deletes)."""
    body: bytes | None = None
    """The replacement body, when the filter replaced it."""
    quarantine: str | None = None
    """The filter's reason, when it asked for the message to be held."""


class _Conversation:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout_s: float):
        self.reader, self.writer, self.timeout_s = reader, writer, timeout_s
        self.parser = MilterParser()
        self.outcome = MilterOutcome()
        self.protocol = Protocol(0)
        self.skipped = False  # the filter answered SMFIR_SKIP: no more body chunks

    async def response(self) -> Response:
        while True:
            response = self.parser.next()
            if response is not None:
                if response.command == "p":  # progress: the filter is alive, wait again
                    continue
                return response
            data = await asyncio.wait_for(self.reader.read(65_536), self.timeout_s)
            if not data:
                raise MilterProtocolError("the filter closed the connection")
            self.parser.feed(data)

    async def step(self, packet: bytes, *, skip: Protocol = _NONE, no_reply: Protocol = _NONE) -> bool:
        """Send ``packet`` unless the filter declined the step; wait for its answer unless it said it
        sends none. True to go on, False when the filter gave its final verdict."""
        if skip and skip & self.protocol:
            return True
        self.writer.write(packet)
        if no_reply and no_reply & self.protocol:
            return True
        await self.writer.drain()
        response = await self.response()
        if response.command in "cs":
            self.skipped = response.command == "s"
            return True
        return self.final(response)

    def final(self, response: Response) -> bool:
        command = response.command
        if command not in "acdrty":
            raise MilterProtocolError(f"milter reply {command!r} out of place")
        self.outcome.verdict = command
        if command == "y":
            self.outcome.reply = response.strings()[0]
        return False

    async def end_of_message(self) -> None:
        self.writer.write(encode("E"))
        await self.writer.drain()
        out = self.outcome
        body: list[bytes] = []
        while True:
            response = await self.response()
            command = response.command
            if command == "h":
                name, value = response.strings()
                out.added.append((name, value))
            elif command == "i":
                _index, name, value = response.indexed()
                out.added.append((name, value))
            elif command == "m":
                out.changed.append(response.indexed())
            elif command == "b":
                body.append(response.data)
            elif command == "q":
                out.quarantine = response.strings()[0]
            elif command == "s":
                continue
            else:
                self.final(response)
                break
        if body:
            out.body = b"".join(body)


async def run_milter(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, txn: MilterTransaction, *, timeout_s: float
) -> MilterOutcome:
    """The conversation for one message over an open connection; the caller closes it."""
    talk = _Conversation(reader, writer, timeout_s)
    writer.write(encode_optneg())
    await writer.drain()
    reply = await talk.response()
    if reply.command != "O":
        raise MilterProtocolError(f"milter answered the negotiation with {reply.command!r}")
    _version, _actions, talk.protocol = reply.optneg()
    if await _envelope(talk, txn) and await _content(talk, txn):
        await talk.end_of_message()
    with contextlib.suppress(OSError):
        writer.write(encode("Q"))
        await writer.drain()
    return talk.outcome


async def _envelope(talk: _Conversation, txn: MilterTransaction) -> bool:
    macros = {"j": txn.hostname, "{daemon_name}": "postier", "_": f"{txn.client_name} [{txn.client_ip}]"}
    talk.writer.write(encode_macros("C", macros))
    connect = encode_connect(txn.client_name, txn.client_ip, txn.client_port)
    if not await talk.step(connect, skip=Protocol.NOCONNECT, no_reply=Protocol.NR_CONN):
        return False
    if not await talk.step(
        encode("H", txn.helo or txn.client_ip), skip=Protocol.NOHELO, no_reply=Protocol.NR_HELO
    ):
        return False
    mail_macros = {"i": txn.queue_id, "{mail_addr}": txn.sender.strip("<>")}
    if txn.auth_user:
        mail_macros["{auth_authen}"] = txn.auth_user
    talk.writer.write(encode_macros("M", mail_macros))
    if not await talk.step(encode("M", txn.sender), skip=Protocol.NOMAIL, no_reply=Protocol.NR_MAIL):
        return False
    for rcpt in txn.recipients:
        talk.writer.write(encode_macros("R", {"{rcpt_addr}": rcpt.strip("<>")}))
        if not await talk.step(encode("R", rcpt), skip=Protocol.NORCPT, no_reply=Protocol.NR_RCPT):
            return False
    return await talk.step(encode("T"), skip=Protocol.NODATA, no_reply=Protocol.NR_DATA)


async def _content(talk: _Conversation, txn: MilterTransaction) -> bool:
    for name, value in txn.headers:
        packet = encode("L", name, _milter_value(value))
        if not await talk.step(packet, skip=Protocol.NOHDRS, no_reply=Protocol.NR_HDR):
            return False
    if not await talk.step(encode("N"), skip=Protocol.NOEOH, no_reply=Protocol.NR_EOH):
        return False
    for start in range(0, len(txn.body), MAX_CHUNK):
        chunk = encode("B", txn.body[start : start + MAX_CHUNK])
        if not await talk.step(chunk, skip=Protocol.NOBODY, no_reply=Protocol.NR_BODY):
            return False
        if talk.skipped:
            break
    return True


def _milter_value(raw: str) -> str:
    """A header value as milters expect it: the one leading space after the colon removed (we never
    offer HDR_LEADSPC), folded lines joined by a bare LF as Sendmail and Postfix send them."""
    value = raw[1:] if raw.startswith(" ") else raw
    return value.replace("\r\n", "\n")
