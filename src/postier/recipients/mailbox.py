"""A local part as the name of its mailbox directory (``mail/{domain}/{user}``): the one mapping the
directory and the Maildir writer share."""

from __future__ import annotations

__all__ = ["mailbox_name"]


def mailbox_name(local_part: str) -> str:
    """A local part as a directory name: unquoted, lowercased, with ``/`` and NUL replaced by
    ``_`` and leading dots replaced by ``_`` (no ``.``, ``..`` or hidden directories)."""
    name = local_part
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = _unescape(name[1:-1])
    name = name.lower().replace("/", "_").replace("\0", "_")
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    return name or "_"


def _unescape(quoted_inner: str) -> str:
    """RFC 5321 §4.1.2 quoted-pairSMTP: a backslash quotes the next character."""
    out: list[str] = []
    escaped = False
    for char in quoted_inner:
        if char == "\\" and not escaped:
            escaped = True
            continue
        out.append(char)
        escaped = False
    return "".join(out)
