"""RFC 6376 §3.4 relaxed canonicalisation, and the split of a message into header fields and body.

Theory of operation: a message arrives as bytes with CRLF line ends (the SMTP engine refuses bare CR
and LF). ``split_message`` cuts it at the first empty line (RFC 5322 §2.1); ``header_fields`` groups
the header lines into fields (a line starting with SP or HTAB continues the field above, §2.2.3).

- relaxed header (§3.4.2): the name lowercased, the value unfolded (CRLF removed), runs of WSP made
  one SP, WSP at the start and end of the value and around the colon removed;
- relaxed body (§3.4.4): runs of WSP made one SP, WSP at line ends removed, empty lines at the end
  removed; a non-empty body then ends in exactly one CRLF, an empty one stays empty (erratum 3133).

Pure functions on bytes: 8-bit and UTF-8 header text (RFC 6532) is canonicalised as octets.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["RelaxedBodyHash", "header_fields", "relaxed_body", "relaxed_header", "split_message"]

# Only runs that change: a tab, or two or more WSP. A single space stays as it is, untouched.
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header section with the CRLF of its last line, body). No empty line: all header, no body."""
    if message.startswith(b"\r\n"):
        return b"", message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return message if message.endswith(b"\r\n") or not message else message + b"\r\n", b""
    return message[: end + 2], message[end + 4 :]


def header_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of a header section, top to bottom: (lowercased name, the field as it is, folded,
    without its final CRLF)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[0] in (0x20, 0x09) and fields:  # RFC 5322 §2.2.3: a folded continuation
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
            continue
        colon = line.find(b":")
        name = line[:colon] if colon >= 0 else line
        fields.append((name.rstrip(b" \t").lower(), line))
    return fields


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 §3.4.2 for one field (as it is, folded, without its final CRLF); no CRLF added."""
    name, _, value = field.partition(b":")
    value = value.replace(b"\r\n", b"")
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 for a body with CRLF line ends."""
    if b"\t" in body or b"  " in body:  # a substring search is far quicker than the regex's scan
        body = _WSP_RUN.sub(b" ", body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    if body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n") and body != b"\r\n":
        return body  # the usual case: one CRLF after a last line that is not empty
    end = len(body)
    while body.endswith(b"\r\n", 0, end):  # §3.4.4 c: empty lines at the end do not count
        end -= 2
    return body[:end] + b"\r\n" if end else b""


class RelaxedBodyHash:
    """The SHA-256 of ``relaxed_body(body)`` with the body fed in pieces (a large message read from
    its spool file): whole lines are canonicalised as they come, and empty lines are held back until
    a non-empty line follows them (§3.4.4 c drops those at the end). A line without its CRLF waits
    for the next piece; ``digest`` ends the body."""

    __slots__ = ("_empty", "_hash", "_partial")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._partial = bytearray()  # the start of a line whose CRLF has not come yet
        self._empty = 0  # empty lines seen, not yet hashed

    def update(self, data: bytes) -> None:
        self._partial += data
        cut = self._partial.rfind(b"\r\n")
        if cut < 0:
            return
        lines = bytes(self._partial[: cut + 2])
        del self._partial[: cut + 2]
        self._lines(lines)

    def _lines(self, lines: bytes) -> None:
        """Whole lines (the last ends in CRLF)."""
        if b"\t" in lines or b"  " in lines:
            lines = _WSP_RUN.sub(b" ", lines)
        if b" \r\n" in lines:
            lines = lines.replace(b" \r\n", b"\r\n")
        end = len(lines)
        while lines.endswith(b"\r\n", 0, end):
            end -= 2
        if end == 0:
            self._empty += len(lines) // 2
            return
        if self._empty:
            self._hash.update(b"\r\n" * self._empty)
        self._hash.update(lines[: end + 2])
        self._empty = (len(lines) - end - 2) // 2

    def digest(self) -> bytes:
        if self._partial:
            self._lines(bytes(self._partial) + b"\r\n")
            self._partial.clear()
        return self._hash.digest()
