"""Reading SMTP replies on the client side: wire bytes → ``Reply`` values, and EHLO keywords.

Theory of operation. ``ReplyReader.feed`` takes received bytes and returns every reply they complete;
an unfinished line or multi-line reply waits in the reader. Everything a hostile server can make us
keep is bounded: one line is at most ``max_line`` octets, one reply at most ``max_lines`` lines, so the
reader never holds more than about ``max_line × max_lines`` octets. Anything malformed raises
``RemoteProtocolError`` — and nothing else does.

Rules, and where they bend on purpose:

- RFC 5321 §4.2: ``Reply-code [ ("-" / SP) textstring ] CRLF``; a code is three digits, the first 2–5.
  All lines of one reply carry the same code (mixed codes are an error). A bare last line ``250`` is legal.
- Lines end with CRLF; a bare LF is accepted as a line end too (old servers send it); a CR anywhere
  else is an error. RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers exceed it, so
  the default limit is 2048.
- Text is ASCII printable plus HT (``textstring``); UTF-8 is accepted as well, since SMTPUTF8 servers
  may send it (RFC 6531 §3.7.4.2). Invalid UTF-8 or control characters are errors.
- Enhanced status codes (RFC 2034, RFC 3463) are taken from the start of the text whenever they are
  well-formed and their class matches the reply code — whether or not ENHANCEDSTATUSCODES was offered,
  because many servers send them anyway, and peers that omit them are simply left with ``status=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postier.mail.errors import RemoteProtocolError
from postier.mail.reply import EnhancedStatus, Reply

__all__ = [
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "Extensions",
    "ReplyReader",
    "parse_extensions",
    "protocol_error",
]

MAX_REPLY_LINE = 2048  # octets, line end included (RFC 5321 §4.5.3.1.5 says 512; servers exceed it)
MAX_REPLY_LINES = 100  # lines in one multi-line reply (a long EHLO reply has ~20)

_LINE = re.compile(r"([2-5][0-9][0-9])([ -]|$)")
_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)")
_BAD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ONE_LINE: dict[bytes, Reply] = {}
"""One-line replies already parsed, by their octets: a peer answers every MAIL, RCPT and DATA the
same way (the final reply, with its queue id, differs each time and is not kept once the map is full)."""
_ONE_LINE_MAX = 256


def protocol_error(why: str) -> RemoteProtocolError:
    """The error for a misbehaving server. RFC 3463 4.5.0 (other protocol status): transient, since
    the next attempt, perhaps to another MX, may well succeed."""
    return RemoteProtocolError(Reply(451, EnhancedStatus(4, 5, 0), why), close=True)


class ReplyReader:
    """Incremental reply parser; see the module docstring for what it accepts."""

    __slots__ = ("_buf", "_code", "_lines", "max_line", "max_lines")

    def __init__(self, *, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self._buf = bytearray()
        self._code: str | None = None  # the code of the multi-line reply being read
        self._lines: list[str] = []

    @property
    def has_partial(self) -> bool:
        """True while part of a reply has been received (at EOF that is a truncated reply)."""
        return bool(self._buf) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        """Take received bytes; the replies they complete, in order."""
        buf = self._buf
        buf += data
        replies: list[Reply] = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end == -1:
                break
            line = bytes(buf[start : end + 1])
            start = end + 1
            if len(line) > self.max_line:
                raise protocol_error("Reply line too long")
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)
        del buf[:start]
        if len(buf) > self.max_line:
            raise protocol_error("Reply line too long")
        return replies

    def _line(self, raw: bytes) -> Reply | None:
        if self._code is None:  # a whole one-line reply seen before (MAIL's, RCPT's, DATA's 354): reuse it
            known = _ONE_LINE.get(raw)
            if known is not None:
                return known
            reply = self._parse_line(raw)
            if reply is not None and len(_ONE_LINE) < _ONE_LINE_MAX:
                _ONE_LINE[raw] = reply
            return reply
        return self._parse_line(raw)

    def _parse_line(self, raw: bytes) -> Reply | None:
        body = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if b"\r" in body:
            raise protocol_error("Bare CR in a reply line")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise protocol_error("Reply line is not valid UTF-8") from None
        match = _LINE.match(text)
        if match is None:
            raise protocol_error("Malformed reply line")
        code, more = match[1], match[2] == "-"
        if self._code is not None and code != self._code:
            raise protocol_error("Mixed reply codes in one multi-line reply")
        line = text[4:]
        if _BAD_TEXT.search(line) is not None:
            raise protocol_error("Control character in a reply")
        self._code = code
        self._lines.append(line)
        if len(self._lines) > self.max_lines:
            raise protocol_error("Too many lines in one reply")
        if more:
            return None
        lines, self._lines, self._code = self._lines, [], None
        return _make_reply(int(code), lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    """One Reply; the enhanced status is taken off every line that starts with it (RFC 2034 §3)."""
    status: EnhancedStatus | None = None
    match = _STATUS.match(lines[0])
    if match is not None and int(match[1]) == code // 100:
        status = EnhancedStatus(int(match[1]), int(match[2]), int(match[3]))
        prefix = str(status)
        lines = [_strip_prefix(line, prefix) for line in lines]
    return Reply(code, status, "\n".join(lines))


def _strip_prefix(line: str, prefix: str) -> str:
    if line == prefix:
        return ""
    if line.startswith(prefix + " "):
        return line[len(prefix) + 1 :]
    return line


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the peer's EHLO reply offered (RFC 5321 §4.1.1.1): keyword (uppercase) → parameter text.

    ``Extensions()`` is a peer that answered HELO only: no extension at all.
    """

    keywords: dict[str, str] = field(default_factory=dict)

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def max_size(self) -> int | None:
        """RFC 1870 SIZE limit in octets; None when SIZE is not offered or gives no limit (0 or none)."""
        words = self.keywords.get("SIZE", "").split()
        if not words or not words[0].isdigit() or len(words[0]) > 20:
            return None
        return int(words[0]) or None

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """RFC 4954 AUTH mechanisms, uppercased."""
        return frozenset(word.upper() for word in self.keywords.get("AUTH", "").split())


_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def parse_extensions(reply: Reply) -> Extensions:
    """The keywords of a 250 EHLO reply. Lines after the first are ``keyword [SP params]``; the old
    ``AUTH=LOGIN PLAIN`` form is read like ``AUTH LOGIN PLAIN``. Malformed lines are skipped: a
    keyword we cannot read is one we do not use."""
    keywords: dict[str, str] = {}
    for line in reply.lines()[1:]:
        head, _, params = line.strip().partition(" ")
        key, eq, first = head.partition("=")
        if _KEYWORD.fullmatch(key) is None:
            continue
        key = key.upper()
        value = f"{first} {params}".strip() if eq else params.strip()
        if key in keywords and value:  # AUTH given twice (AUTH=… and AUTH …): merge the lists
            value = f"{keywords[key]} {value}".strip()
        keywords[key] = value or keywords.get(key, "")
    return Extensions(keywords)
