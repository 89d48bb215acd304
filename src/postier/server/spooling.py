"""The session's side of receiving a message: the spool file, the memory budget, the data deadline.

``Receiving`` is what the session asks about the message it is receiving, at four places: each read
(``on_input``: the input counted, the memory charged, the engine told to spool when the process's
budget is spent), each ``MessageData`` (``spool.write``), each answered event (``after``: a
transaction that ended without a message drops its spool) and each wait for input (``wait_s``: the
idle timeout, cut short by the message's deadline — ``budget.DataDeadline``).

``ServerConnection`` yields ``MessageData`` for the octets of a message past
``server.hold_message_bytes`` (or from the first one, when the process's memory budget is spent);
``MessageSpool.write`` appends them to an anonymous file in ``data_dir/spool`` (``postier.spool``).
At the end of the message the session takes the file (``take``) into the ``MessageBody`` it queues;
a transaction that ends any other way (refused data, RSET, a new MAIL, the connection lost) drops it.

A spool that cannot be written (disk full, I/O error) is remembered, not raised: the engine still
reads the message to its end (the client and server stay in step), then the message gets
``452 4.3.1`` (no space) or ``451 4.3.0``, like a queue that cannot store it.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.observe import get_logger
from postier.server.budget import Charge, DataDeadline, MemoryBudget
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import Event, Hello, MailFrom, MessageReceived, Rejected, Reset
from postier.spool import MessageBody, SpoolFile

__all__ = ["MessageSpool", "Receiving"]

_log = get_logger("postier.server")


class MessageSpool:
    """At most one spool file at a time, for the message being received."""

    __slots__ = ("_directory", "_file", "_sid", "error")

    def __init__(self, directory: Path, sid: str) -> None:
        self._directory = directory
        self._sid = sid
        self._file: SpoolFile | None = None
        self.error: Reply | None = None  # the spool could not be written: the reply to the message

    @property
    def octets(self) -> int:
        return self._file.size if self._file is not None else 0

    def write(self, parts: Sequence[bytes | bytearray]) -> None:
        if self.error is not None:
            return
        try:
            if self._file is None:
                self._file = SpoolFile(self._directory)
            self._file.write(parts)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            _log.error("session %s: cannot write the spool file: %s", self._sid, exc.strerror or exc)
            self.error = S.QUEUE_FULL if full else S.QUEUE_ERROR
            self._close()

    def take(self) -> SpoolFile | None:
        """The file (the caller closes it); the spool starts afresh for the next message."""
        spool, self._file = self._file, None
        self.error = None
        return spool

    def drop(self) -> None:
        """The transaction ended without a message to queue: forget what was spooled."""
        self._close()
        self.error = None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Receiving:
    """One session's message in progress: its spool, its share of the memory budget, its deadline."""

    __slots__ = ("_charge", "_deadline", "octets_in", "spool")

    def __init__(
        self, *, spool_dir: Path, sid: str, budget: MemoryBudget, data_timeout_s: float, min_rate: float
    ) -> None:
        self.spool = MessageSpool(spool_dir, sid)
        self._charge: Charge = budget.charge()
        self._deadline = DataDeadline(data_timeout_s, min_rate)
        self.octets_in = 0  # every octet the client sent

    def on_input(self, conn: ServerConnection, octets: int) -> None:
        """After ``conn.receive_data``: count, charge the memory budget, spool when it is spent."""
        self.octets_in += octets
        if not self._charge.update(conn.memory_octets):
            conn.spool_message()

    def on_output(self, conn: ServerConnection) -> None:
        """After ``MessageData`` was written: the engine holds less."""
        self._charge.update(conn.memory_octets)

    def after(self, event: Event) -> None:
        """``event`` was answered: a transaction that ended without a message drops its spool."""
        if isinstance(event, MailFrom | Reset | Hello) or (
            isinstance(event, Rejected) and event.command in ("DATA", "BDAT")
        ):
            self.spool.drop()

    def wait_s(self, conn: ServerConnection, now: float, idle_s: float) -> float:
        """How long the next wait for input may last (≤ 0: the message's deadline has passed)."""
        if not conn.is_in_message:
            self._deadline.stop()
            return idle_s
        if not self._deadline.is_running:
            self._deadline.start(now, self.octets_in)
        return min(idle_s, self._deadline.remaining(now, self.octets_in))

    def message(self, event: MessageReceived) -> bytes | MessageBody | Reply:
        """The message of ``event`` as received: ``bytes`` when it was held in memory, a
        ``MessageBody`` over its spool file for a large one (the caller closes it), or the reply when
        the spool could not be written."""
        error = self.spool.error
        if error is not None:
            self.spool.drop()
            return error
        if not event.spooled_octets:
            return event.body
        self.spool.write([event.body])
        error, spool = self.spool.error, self.spool.take()
        if error is not None or spool is None:
            if spool is not None:
                spool.close()
            return error or S.QUEUE_ERROR
        return MessageBody(b"", spool)

    def close(self) -> None:
        self.spool.drop()
        self._charge.release()
