"""Changes a data-stage check may ask for beyond added headers: change or delete a header field,
replace the body (a milter's ``m`` and ``b``, rspamd's rewritten subject).

A ``Verdict`` carries them in ``edits`` (``policy.verdict.modify``); the pipeline keeps them in check
order and the intake applies them with ``apply_edits`` to the message as received, before the headers
the checks add and the ``Received:`` field are put on top. Pure.

- ``HeaderEdit(name, index, value)``: the ``index``-th field called ``name`` (1-based, case-insensitive,
  as Sendmail's ``smfi_chgheader``) gets ``value``; ``None`` or ``""`` deletes it. When there is no such
  field, a non-empty value is added at the end of the header section.
- ``BodyEdit(body)``: the body (everything after the blank line) is replaced; bare LFs become CRLF.

A value that would split into a second field (CR or LF not followed by white space) is refused
whole, as are names that are not RFC 5322 field names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from postier.policy.context import split_header

__all__ = ["BodyEdit", "Edit", "HeaderEdit", "apply_edits", "header_line"]

_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8: printable US-ASCII except ":"
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True, slots=True)
class HeaderEdit:
    name: str
    index: int = 1
    value: str | None = None


@dataclass(frozen=True, slots=True)
class BodyEdit:
    body: bytes


Edit = HeaderEdit | BodyEdit


def apply_edits(data: bytes, edits: Iterable[Edit]) -> bytes:
    """``data`` (header section, blank line, body; CRLF) with ``edits`` applied in order."""
    edits = tuple(edits)
    if not edits:
        return data
    header_end, body_start = split_header(data)
    fields = _fields(data[:header_end])
    body = data[body_start:]
    for edit in edits:
        if isinstance(edit, BodyEdit):
            body = _BARE_LF.sub(b"\r\n", edit.body)
        else:
            _edit_header(fields, edit)
    return b"".join(fields) + b"\r\n" + body


def _fields(header: bytes) -> list[bytes]:
    """The header fields, each with its continuation lines and its final CRLF."""
    fields: list[bytes] = []
    for line in header.split(b"\r\n") if header else ():
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields


def header_line(name: str, value: str) -> bytes | None:
    """``name: value`` CRLF, folded lines kept (a bare LF, as milters send them, becomes CRLF); None
    when the name is not a field name or a line break is not followed by white space (it would start
    a field the check did not mean)."""
    if not _FIELD_NAME.fullmatch(name):
        return None
    folded = value.replace("\r\n", "\n").replace("\n", "\r\n")
    if re.search(r"\r\n(?![ \t])|\r(?!\n)", folded):
        return None
    return f"{name}: {folded.lstrip(' ')}\r\n".encode()


def _edit_header(fields: list[bytes], edit: HeaderEdit) -> None:
    value = edit.value or ""
    line = header_line(edit.name, value)
    if line is None:
        return
    wanted = edit.name.lower().encode("ascii")
    seen = 0
    for position, field in enumerate(fields):
        if field.split(b":", 1)[0].strip().lower() == wanted:
            seen += 1
            if seen == max(edit.index, 1):
                if value:
                    fields[position] = line
                else:
                    del fields[position]
                return
    if value:
        fields.append(line)
