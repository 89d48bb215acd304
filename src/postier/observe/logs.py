"""Log setup and the two line formats, ``kv`` and ``json``.

Theory of operation: every record becomes exactly one line. Values that may come from a client
(HELO names, addresses, reply texts) are escaped so that CR, LF and other non-printing characters
never reach the log raw: a client cannot forge a log line or hide text with control characters.

``kv``::

    2026-11-29T06:40:20.123Z info event=queued sid=s1 id=Q1 from=<a@example.test> size=312 nrcpt=1
    2026-11-29T06:40:21.004Z warning logger=postier.server msg="listener stopped" addr=127.0.0.1:2525

A value is written bare when it is made only of printable, non-space characters other than ``"``,
``\\`` and ``=``; otherwise it is written in double quotes with ``\\"``, ``\\\\``, ``\\n``, ``\\r``,
``\\t`` and ``\\xHH`` / ``\\uHHHH`` escapes. Non-ASCII printable text (SMTPUTF8 addresses) stays as is.

``json``: one JSON object per line, keys ``ts``, ``level``, then the fields in the same order.

Structured fields ride on a record as the ``postier_fields`` attribute; pass them with
``log.info("text", extra=fields(domain="example.test"))``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, Literal

__all__ = [
    "FIELDS_ATTR",
    "JsonFormatter",
    "KvFormatter",
    "fields",
    "format_kv",
    "get_logger",
    "json_line",
    "set_worker",
    "setup_logging",
    "visible",
]

FIELDS_ATTR = "postier_fields"
LogFormat = Literal["kv", "json"]

_BARE = re.compile(r'[^\s"\\=]+')
_KEY = re.compile(r"[a-z][a-z0-9_.-]*")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_safe_keys: set[str] = set()  # keys seen to match _KEY (a fixed vocabulary: stays small)
_second: tuple[int, str] = (-1, "")  # the last second's "YYYY-MM-DDTHH:MM:SS."
_milli: tuple[int, str] = (-1, "")  # the last millisecond's whole timestamp
_worker: int | None = None  # with server.workers > 1: this process's index, on every line


def fields(**values: object) -> dict[str, Any]:
    """``extra=`` for a logging call: ``log.info("text", extra=fields(sid="s1"))``."""
    return {FIELDS_ATTR: values}


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if ch.isprintable():
        return ch
    # Control characters, line/paragraph separators (U+2028/9), bidi overrides, odd spaces.
    point = ord(ch)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character, separator and bidi override as a visible escape (``\\x1b``,
    ``\\u2028``), so no terminal escape sequence or fake line reaches an operator's screen; a backslash
    becomes ``\\\\`` so escapes cannot be forged. ``keep_newlines``: line feeds and tabs stay (headers)."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if (ch in "\n\t" and keep_newlines) or ch == '"':
            out.append(ch)
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def _json_escape(match: re.Match[str]) -> str:
    if match[0].isprintable():
        return match[0]
    point = ord(match[0])
    if point < 0x10000:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def json_line(obj: object) -> str:
    """``json.dumps`` without ASCII escaping, except for the characters that end or hide a line in some
    readers: U+0085 (NEL), U+2028/U+2029 (line and paragraph separators; JavaScript and some log
    shippers split on them), the bidi overrides and every other non-printable character."""
    text = json.dumps(obj, ensure_ascii=False)
    return text if text.isprintable() else _NON_ASCII.sub(_json_escape, text)


def _render_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_value(value: object) -> str:
    """One kv value, quoted and escaped when it has to be."""
    if type(value) is int:  # sizes, counts: always bare
        return str(value)
    text = value if type(value) is str else _render_scalar(value)
    if _BARE.fullmatch(text) and text.isprintable():
        return text
    return '"' + "".join(_escape_char(ch) for ch in text) + '"'


def format_kv(pairs: Mapping[str, object]) -> str:
    """``key=value key2="value two"``; ``None`` values are left out."""
    out = []
    for key, value in pairs.items():
        if value is None:
            continue
        if key not in _safe_keys:
            if not _KEY.fullmatch(key):
                out.append(f"{format_value(key)}={format_value(value)}")
                continue
            _safe_keys.add(key)
        out.append(f"{key}={format_value(value)}")
    return " ".join(out)


def _timestamp(record: logging.LogRecord) -> str:
    """``2026-11-29T06:40:20.123Z``; made once per millisecond, its date part once per second.
    Each cache is one tuple, read once and replaced whole: threads that log at once never mix them."""
    global _second, _milli
    second = int(record.created)
    micro = round((record.created - second) * 1e6)  # to the µs as datetime.fromtimestamp, then down
    milli = second * 1000 + micro // 1000
    cached = _milli
    if milli == cached[0]:
        return cached[1]
    second, day = milli // 1000, _second
    if second != day[0]:
        day = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)))
    stamp = f"{day[1]}{milli % 1000:03d}Z"
    _milli = (milli, stamp)
    return stamp


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields of a record in line order: mail events carry them all; other records get
    ``logger`` and ``msg`` first, then their fields, then ``exc`` for a traceback."""
    extra = getattr(record, FIELDS_ATTR, None)
    out: dict[str, object] = {}
    is_mail_event = isinstance(extra, Mapping) and "event" in extra
    if not is_mail_event:
        out["logger"] = record.name
        out["msg"] = record.getMessage()
    if isinstance(extra, Mapping):
        out.update(extra)
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["exc"] = record.exc_text
    return out


def set_worker(index: int | None) -> None:
    """With several worker processes, every line says which one wrote it (``worker=0`` is the
    primary), as Postfix's lines carry a process id. None: single process, nothing added."""
    global _worker
    _worker = index


class KvFormatter(logging.Formatter):
    """``<UTC timestamp> <level> key=value …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_timestamp(record)} {record.levelname.lower()}"
        if _worker is not None:
            head = f"{head} worker={_worker}"
        body = format_kv(_record_fields(record))
        return f"{head} {body}" if body else head


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``{"ts": …, "level": …, "event": …, …}``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {"ts": _timestamp(record), "level": record.levelname.lower()}
        if _worker is not None:
            obj["worker"] = _worker
        for key, value in _record_fields(record).items():
            if value is None:
                continue
            # json.dumps escapes every control character and keeps the line single.
            obj[key] = value if isinstance(value, (int, float, bool)) else str(value)
        return json_line(obj)


class _PostierHandler(logging.StreamHandler[IO[str]]):
    """Marks the handler setup_logging installed, so a second call replaces it."""


def setup_logging(
    level: str = "info", fmt: LogFormat = "kv", stream: IO[str] | None = None
) -> logging.Handler:
    """Send all records at ``level`` or above to ``stream`` (standard error by default), one line each.

    Installs one handler on the root logger (so library warnings share the format) and replaces the
    one a previous call installed. Returns the handler.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level: {level!r}")
    if fmt not in ("kv", "json"):
        raise ValueError(f"unknown log format: {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PostierHandler)]:
        root.removeHandler(old)
    handler = _PostierHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(KvFormatter() if fmt == "kv" else JsonFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def get_logger(name: str) -> logging.Logger:
    """A logger under ``postier.`` for messages that are not mail events."""
    return logging.getLogger(name if name == "postier" or name.startswith("postier.") else f"postier.{name}")
