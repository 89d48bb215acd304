"""Where the engine puts the message it reads: in memory up to a bound, beyond it handed to the driver.

Theory of operation. Both framings (DATA after unstuffing, BDAT chunks as they come) write the
message's octets, in order, into one ``MessageSink``. The sink keeps them in memory while the
message is small (``hold_octets``, 256 KiB by default in the server); past that — or as soon as the
driver calls ``spool()``, because the server's global memory budget is spent — it *spools*: what it
holds and everything written after it becomes output that the engine hands to the driver
(``ServerConnection.next_event`` yields ``MessageData``) and the driver writes to disk. The engine
stays I/O-free, and the memory one message costs is bounded whatever its size.

The sink also enforces the two bounds that do not depend on the framing:

- the message size (``max_message_octets``, RFC 1870 SIZE): 552 5.3.4;
- the header section (RFC 5322 §2.1: up to the first empty line), at most ``max_header_octets``
  (1 MiB): a longer one is refused with 552 5.3.4 too — a size limit of this system, which a client
  should not retry as it is. Nothing later (the policy's header parsing, the loop check) ever sees
  an unbounded header section. A message without an empty line is all header.

After an error the sink drops what it held and takes nothing more (``error`` is the reply); the
framing reads on to the real end of the message before the engine answers.

Tiny writes (one-octet BDAT chunks, a client that trickles) are coalesced into a ``bytearray``
instead of growing a list of small objects: every octet held costs about one octet.
"""

from __future__ import annotations

from postier.mail.replies import S
from postier.mail.reply import Reply

__all__ = ["DEFAULT_MAX_HEADER_OCTETS", "MessageSink"]

DEFAULT_MAX_HEADER_OCTETS = 1 << 20
_SMALL = 16 * 1024  # writes below this are copied into a shared bytearray
_PART = 64 * 1024  # …of at most this size
_BLANK = b"\r\n\r\n"


def _append(parts: list[bytes | bytearray], data: bytes | bytearray) -> None:
    if len(data) < _SMALL:
        last = parts[-1] if parts else None
        if isinstance(last, bytearray) and len(last) < _PART:
            last += data
        else:
            parts.append(bytearray(data))
    else:
        parts.append(bytes(data))  # bytes(b) is b itself


class MessageSink:
    """One message's octets: held (``held_octets``) or waiting to be taken by the driver (``take``)."""

    __slots__ = (
        "_header_end",
        "_held",
        "_out",
        "_tail",
        "error",
        "held_octets",
        "hold_octets",
        "max_header_octets",
        "max_message_octets",
        "octets",
        "out_octets",
        "spooled_octets",
    )

    def __init__(
        self,
        *,
        max_message_octets: int,
        hold_octets: int | None = None,
        max_header_octets: int = DEFAULT_MAX_HEADER_OCTETS,
    ) -> None:
        self.max_message_octets = max_message_octets
        self.hold_octets = max_message_octets if hold_octets is None else hold_octets
        self.max_header_octets = max_header_octets
        self._held: list[bytes | bytearray] = []
        self._out: list[bytes | bytearray] = []
        self.held_octets = 0
        self.out_octets = 0
        self.spooled_octets = 0  # taken by the driver so far
        self.octets = 0  # written so far (the message size)
        self.error: Reply | None = None
        self._header_end = -1  # where the header section ends, once known
        self._tail = b"\r\n"  # the last octets written (up to 3), behind a virtual CRLF at the start

    @property
    def is_spooling(self) -> bool:
        return self.spooled_octets > 0 or bool(self._out) or self.hold_octets <= 0

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def memory_octets(self) -> int:
        """Octets this sink keeps in memory now (held, plus output not yet taken)."""
        return self.held_octets + self.out_octets

    def write(self, data: bytes | bytearray) -> None:
        """The next octets of the message (the caller may reuse ``data`` afterwards if it is mutable)."""
        if self.error is not None or not data:
            return
        if self._header_end < 0:
            self._scan_header(data)
        self.octets += len(data)
        if self.octets > self.max_message_octets:
            self.fail(S.MESSAGE_TOO_BIG)
            return
        if self.error is not None:
            return
        if self.is_spooling or self.held_octets + len(data) > self.hold_octets:
            self._move_held_out()
            _append(self._out, data)
            self.out_octets += len(data)
        else:
            _append(self._held, data)
            self.held_octets += len(data)

    def spool(self) -> None:
        """Hold nothing more in memory: what is held, and all that comes, goes to the driver."""
        self.hold_octets = 0
        self._move_held_out()

    def take(self) -> tuple[bytes | bytearray, ...]:
        """The output so far (for ``os.writev``), in order; the sink forgets it."""
        out = tuple(self._out)
        self.spooled_octets += self.out_octets
        self._out.clear()
        self.out_octets = 0
        return out

    def finish(self) -> bytes:
        """After the last write: what is left in memory (the whole message when nothing was spooled)."""
        parts = self._held + self._out
        self._held, self._out = [], []
        self.held_octets = self.out_octets = 0
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def fail(self, reply: Reply) -> None:
        """The message is refused: drop what is held; later writes are ignored."""
        if self.error is None:
            self.error = reply
        self._held.clear()
        self._out.clear()
        self.held_octets = self.out_octets = 0

    def _move_held_out(self) -> None:
        if self._held:
            self._out = self._held + self._out
            self.out_octets += self.held_octets
            self._held = []
            self.held_octets = 0

    def _scan_header(self, data: bytes | bytearray) -> None:
        """Find the empty line that ends the header section (RFC 5322 §2.1); refuse a section longer
        than ``max_header_octets``. Scans only up to the limit: C-speed, bounded whatever the data."""
        limit, seen, tail = self.max_header_octets, self.octets, self._tail
        hit = (tail + bytes(data[:3])).find(_BLANK)
        if hit >= 0:
            self._header_end = max(seen + hit - len(tail), 0)
        else:
            found = data.find(_BLANK, 0, max(limit - seen + 4, 0))
            if found >= 0:
                self._header_end = seen + found
            else:
                self._tail = (tail + bytes(data[-3:]))[-3:]
        end = self._header_end
        if end > limit or (end < 0 and seen + len(data) > limit + 4):
            self.fail(S.HEADER_TOO_BIG)
