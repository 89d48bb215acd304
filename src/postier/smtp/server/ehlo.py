"""The EHLO reply (RFC 5321 §4.1.1.1): the extensions offered in the session's current state."""

from __future__ import annotations

from postier.mail.reply import Reply
from postier.smtp.server.settings import EngineSettings

__all__ = ["ehlo_reply"]


_built: dict[tuple[int, str, bool, tuple[str, ...]], tuple[EngineSettings, Reply]] = {}
_BUILT_MAX = 64


def ehlo_reply(s: EngineSettings, hostname: str, *, is_tls: bool, mechanisms: tuple[str, ...]) -> Reply:
    """The multi-line 250 reply: STARTTLS until TLS is on, REQUIRETLS only under TLS (RFC 8689 §4),
    AUTH under TLS (or without it when ``auth_requires_tls`` is off). Every session asks for the same
    few: each is built once per settings object (kept beside its key, so a reused ``id`` never
    matches another object's settings)."""
    key = (id(s), hostname, is_tls, mechanisms)
    built = _built.get(key)
    if built is not None and built[0] is s:
        return built[1]
    reply = _build(s, hostname, is_tls=is_tls, mechanisms=mechanisms)
    if len(_built) >= _BUILT_MAX:
        _built.clear()
    _built[key] = (s, reply)
    return reply


def _build(s: EngineSettings, hostname: str, *, is_tls: bool, mechanisms: tuple[str, ...]) -> Reply:
    lines = [hostname, "PIPELINING", f"SIZE {s.max_message_bytes}", "8BITMIME"]
    lines += ["SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "DSN"]
    if s.can_starttls and not is_tls:
        lines.append("STARTTLS")
    if is_tls:
        lines.append("REQUIRETLS")
    if mechanisms and (is_tls or not s.auth_requires_tls):
        lines.append("AUTH " + " ".join(mechanisms))
    return Reply(250, None, "\n".join(lines))
