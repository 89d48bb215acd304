"""Message framing: DATA (dot-terminated, RFC 5321 §4.1.1.4, §4.5.2) and BDAT chunks (RFC 3030).

Theory of operation. After the 354, the engine feeds every received byte to a ``DataReader`` until it
reports the end. The reader keeps the raw (dot-stuffed) bytes behind a virtual leading CRLF — the CRLF
that ended the DATA command line — so that the one terminator pattern ``<CRLF>.<CRLF>`` also finds a
message that ends right away (``.<CRLF>`` as the first line). Only that exact pattern ends the data:
``<LF>.<LF>``, ``<LF>.<CR><LF>``, ``<CR>.<CR>`` and ``<CR><LF>.<LF>`` do not (SMTP smuggling).

Decisions, deliberately:

- A bare CR or bare LF anywhere in the data does not end it and is not repaired: the reader reads on to
  the real ``<CRLF>.<CRLF>``, then the whole message is refused with 550 5.6.0 and the session goes on.
  Reading to the real end keeps the client and server in step (a smuggled ``MAIL FROM`` after a bare-LF
  "end" stays message data); refusing rather than normalising means no two MTAs can disagree about where
  this message ended (RFC 5321 §2.3.8).
- A message over ``max_message_bytes`` is still read to its end, but its bytes are dropped as they come
  (only the last 4 are kept to find the terminator across reads): memory stays bounded, and 552 5.3.4
  is sent after the end, so the tail is never read as commands.
- A line longer than ``max_text_line`` (CRLF included, on the wire) gets 550 5.6.0 after the end.
- The message goes, as it is read, into a ``MessageSink`` (``sink.py``), which holds it in memory up
  to a bound and hands the rest to the driver, and which bounds the size and the header section.
  The reader itself keeps at most ``_SETTLE_OCTETS`` plus one line: memory per message is bounded.

All scanning uses ``bytes.find``/``count``/``replace``/``split``: the cost is O(n) at C speed.
"""

from __future__ import annotations

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.sink import MessageSink

__all__ = ["ChunkReader", "DataReader", "dot_stuff", "dot_unstuff"]

_SETTLE_OCTETS = 64 * 1024


def dot_unstuff(raw: bytes) -> bytes:
    """Undo RFC 5321 §4.5.2 transparency: drop the first "." of every line that starts with one.
    ``raw`` is the data between the 354 and the terminator (its last line keeps its CRLF)."""
    return (b"\r\n" + raw).replace(b"\r\n.", b"\r\n")[2:]


def dot_stuff(body: bytes) -> bytes:
    """The DATA wire form of ``body``: dot-stuffed, CRLF-terminated, followed by ``.<CRLF>``."""
    if not body:
        return b".\r\n"
    stuffed = (b"\r\n" + body).replace(b"\r\n.", b"\r\n..")[2:]
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


class DataReader:
    """Reads DATA until ``<CRLF>.<CRLF>`` into a ``MessageSink``; ``feed`` returns the bytes after the
    terminator when done.

    The raw bytes wait in a buffer that always starts with a CRLF (at first the virtual one). Once it
    holds more than ``_SETTLE_OCTETS``, the part up to its last CRLF is *settled*: checked (bare CR
    or LF, line length), unstuffed and written to the sink; the buffer keeps that CRLF and what
    follows it. No ``<CRLF>.`` can straddle the cut (it would need the cut's CR to be a dot), so
    settling in pieces gives exactly the message settling it whole would. A line that is already
    too long before its CRLF arrives fails the message at once: the buffer never holds more than
    one settle's worth plus one line of ``max_text_line``."""

    __slots__ = ("_buf", "_first", "_max_line", "_scan", "error", "is_done", "sink")

    def __init__(
        self, *, max_message_bytes: int, max_text_line: int, sink: MessageSink | None = None
    ) -> None:
        self._buf = bytearray(b"\r\n")  # the virtual CRLF that ended the DATA line
        self._scan = 0  # where the next search for the terminator starts
        self._first = True  # the buffer still starts with the virtual CRLF
        self._max_line = max_text_line
        self.sink = sink or MessageSink(max_message_octets=max_message_bytes)
        self.error: Reply | None = None  # the framing's own refusal (bare CR/LF, long line)
        self.is_done = False

    @property
    def memory_octets(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> bytes | None:
        """Take more bytes; None while the terminator is not seen, else what followed it."""
        buf = self._buf
        buf += data
        end = self._find_end(buf)
        if end == -1:
            if self._failed:
                del buf[:-4]  # discarding: keep only what may start the terminator
                self._scan = 0
            elif len(buf) > self._max_line and buf.rfind(b"\n", len(buf) - self._max_line) == -1:
                self._fail(S.DATA_LINE_TOO_LONG)  # the line is too long before its CRLF even comes
            elif len(buf) > _SETTLE_OCTETS:
                self._settle(buf.rfind(b"\r\n"))
            return None
        rest = bytes(buf[end + 5 :])
        del buf[end + 2 :]  # keep the CRLF of the last line
        self.is_done = True
        if not self._failed:
            self._settle(len(buf))
        return rest

    @property
    def _failed(self) -> bool:
        return self.error is not None or self.sink.error is not None

    def _fail(self, reply: Reply) -> None:
        self.error = reply
        self.sink.fail(reply)
        del self._buf[:-4]
        self._scan = 0

    def _find_end(self, buf: bytearray) -> int:
        """Where ``<CRLF>.<CRLF>`` starts, or -1. The whole pattern is searched for (a longer pattern
        is also a faster search); the last 4 octets are searched again with the next bytes, since the
        terminator may begin in them."""
        hit = buf.find(b"\r\n.\r\n", self._scan)
        if hit == -1:
            self._scan = max(len(buf) - 4, 0)
        return hit

    def _settle(self, cut: int) -> None:
        """Check, unstuff and write ``buf[:cut]`` to the sink (``cut``: a CRLF's start, or the end)."""
        buf = self._buf
        if cut <= 0:
            return
        # Every CR and every LF belongs to a CRLF exactly when there are twice as many of them as CRLFs.
        if buf.count(b"\r", 0, cut) + buf.count(b"\n", 0, cut) != 2 * buf.count(b"\r\n", 0, cut):
            self._fail(S.BAD_DATA_LINE_ENDING)
            return
        if _has_long_line(buf, self._max_line, min(cut + 2, len(buf))):
            self._fail(S.DATA_LINE_TOO_LONG)
            return
        skip = 2 if self._first else 0
        with memoryview(buf) as view:
            if buf.find(b"\r\n.", 0, cut) == -1:  # most messages have no stuffed dot: one copy
                piece = bytes(view[skip:cut])
            else:
                piece = bytes(view[:cut]).replace(b"\r\n.", b"\r\n")[skip:]
        del buf[:cut]
        self._first = False
        self._scan = max(self._scan - cut, 0)
        self.sink.write(piece)
        if self.sink.error is not None:
            self._fail(self.sink.error)

    def result(self) -> tuple[bytes, Reply | None]:
        """``(body, None)`` for a good message, ``(b"", reply)`` for one to refuse (after ``is_done``).
        ``body`` is what the sink still holds: the whole message unless it spooled."""
        error = self.error or self.sink.error
        if error is not None:
            return b"", error
        return self.sink.finish(), None


def _has_long_line(buf: bytearray, max_line: int, end: int) -> bool:
    """Is a line of ``buf[:end]`` (CRLF-terminated lines only) longer than ``max_line`` octets, CRLF
    included?

    Walks from line start to line start in steps of up to ``max_line`` octets: the last LF within
    ``max_line`` octets of a line start ends every line begun since, each within the limit; no LF
    there means the line starting here is too long. About len/max_line ``rfind`` calls."""
    pos = 0
    while end - pos > max_line:
        lf = buf.rfind(b"\n", pos, pos + max_line)
        if lf == -1:
            return True
        pos = lf + 1
    return False


class ChunkReader:
    """Reads exactly ``size`` octets of one BDAT chunk (RFC 3030 §2): written to ``sink`` when given
    (kept), else dropped."""

    __slots__ = ("_left", "is_done", "sink", "size")

    def __init__(self, size: int, *, sink: MessageSink | None) -> None:
        self.size = size
        self.sink = sink
        self._left = size
        self.is_done = size == 0

    @property
    def keep(self) -> bool:
        return self.sink is not None

    @property
    def memory_octets(self) -> int:
        return 0

    def feed(self, data: bytes | bytearray) -> bytes | None:
        """Take more bytes; None until the chunk is complete, else the bytes after it."""
        take = min(self._left, len(data))
        if self.sink is not None and take:
            self.sink.write(data if take == len(data) else data[:take])
        self._left -= take
        if self._left:
            return None
        self.is_done = True
        return bytes(data[take:])
