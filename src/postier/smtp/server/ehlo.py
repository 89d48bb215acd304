"""The EHLO reply (RFC 5321 §4.1.1.1): the extensions offered in the session's current state."""

from __future__ import annotations

from postier.mail.reply import Reply
from postier.smtp.server.settings import EngineSettings

__all__ = ["ehlo_reply"]


def ehlo_reply(s: EngineSettings, hostname: str, *, is_tls: bool, mechanisms: tuple[str, ...]) -> Reply:
    """The multi-line 250 reply: STARTTLS until TLS is on, REQUIRETLS only under TLS (RFC 8689 §4),
    AUTH under TLS (or without it when ``auth_requires_tls`` is off)."""
    lines = [hostname, "PIPELINING", f"SIZE {s.max_message_bytes}", "8BITMIME"]
    lines += ["SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "DSN"]
    if s.can_starttls and not is_tls:
        lines.append("STARTTLS")
    if is_tls:
        lines.append("REQUIRETLS")
    if mechanisms and (is_tls or not s.auth_requires_tls):
        lines.append("AUTH " + " ".join(mechanisms))
    return Reply(250, None, "\n".join(lines))
