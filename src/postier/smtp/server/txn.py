"""The open mail transaction of the server engine: from MAIL FROM to the end of the message.

What it gathers — sender, parameters, the recipients the driver accepted — and, once the message
starts (354 or the first BDAT), the ``MessageSink`` that takes its octets. BDAT bookkeeping lives
here too: the octets announced so far, the small chunks counted, the reply a failed chunk left for
the chunks after it (RFC 3030 §2).

Small chunks. Chunks are merged into the sink as they come, so a chunk costs no memory of its own;
but each small chunk (not LAST, under ``bdat_min_chunk_octets``) costs a command and a reply, so a
session may send ``bdat_max_small_chunks`` of them (counted over its transactions: RSET and a new
MAIL start no new budget): beyond, the transaction fails with 552 5.3.4, and so does every later
small chunk, each counting as an error, so ``max_errors`` ends a ``BDAT 0`` flood. The other
chunks are bounded by the size limit: at most ``max_message_bytes / bdat_min_chunk_octets``.
"""

from __future__ import annotations

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.framing import ChunkReader
from postier.smtp.grammar import MailParams
from postier.smtp.server.events import MessageReceived
from postier.smtp.server.settings import EngineSettings
from postier.smtp.sink import MessageSink

__all__ = ["Transaction"]


class Transaction:
    """What one MAIL … (DATA | BDAT LAST) transaction has gathered."""

    __slots__ = (
        "chunk_bytes",
        "failed",
        "params",
        "recipients",
        "sender",
        "sink",
        "small_chunks",
        "used_bdat",
    )

    def __init__(self, sender: Address | None, params: MailParams) -> None:
        self.sender = sender
        self.params = params
        self.recipients: list[Recipient] = []
        self.sink: MessageSink | None = None  # the message's octets, from DATA or the first BDAT
        self.chunk_bytes = 0
        self.small_chunks = 0  # BDAT chunks (not LAST) under bdat_min_chunk_octets
        self.used_bdat = False
        self.failed: Reply | None = None  # a BDAT chunk failed: later chunks get this reply

    def open_sink(self, settings: EngineSettings) -> MessageSink:
        if self.sink is None:
            self.sink = MessageSink(
                max_message_octets=settings.max_message_bytes,
                hold_octets=settings.hold_message_octets,
                max_header_octets=settings.max_header_octets,
            )
        return self.sink

    def message(self, sink: MessageSink) -> MessageReceived:
        body = sink.finish()
        return MessageReceived(
            body,
            sender=self.sender,
            params=self.params,
            recipients=tuple(self.recipients),
            spooled_octets=sink.spooled_octets,
        )

    def chunk_refusal(
        self, reader: ChunkReader, settings: EngineSettings, *, last: bool, small_before: int
    ) -> Reply | None:
        """Why a chunk just read fails the transaction, or None. ``small_before``: the small chunks
        of the session's earlier transactions (the cap is per session: RSET starts no new budget)."""
        if not reader.keep:
            return S.MESSAGE_TOO_BIG  # RFC 3030 §2 and RFC 1870: over the limit across chunks
        if self.sink is not None and self.sink.error is not None:
            return self.sink.error  # the header section is too long
        if is_small_chunk(reader, settings, last=last):
            self.small_chunks += 1
            if self.small_chunks + small_before > settings.bdat_max_small_chunks:
                return S.TOO_MANY_CHUNKS
        return None


def is_small_chunk(reader: ChunkReader, settings: EngineSettings, *, last: bool) -> bool:
    return not last and reader.size < settings.bdat_min_chunk_octets
