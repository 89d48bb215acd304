"""Command-line grammar: verbs, MAIL/RCPT arguments, ESMTP parameters and xtext.

Every function here is pure and raises ``RemoteProtocolError(reply)`` with the reply RFC 5321 §4.3.2
allows for the command: 501 5.5.2 for bad syntax, 501 5.1.7 / 5.1.3 for a bad path, 555 5.5.4 for an
unknown or repeated parameter, 501 5.5.4 for a bad parameter value, 552 5.3.4 for SIZE over the limit,
553 5.6.7 for a UTF-8 address without SMTPUTF8.

Leniency, on purpose: ``MAIL FROM: <a@b>`` (a space after the colon) is accepted, as many clients
send it; parameter keywords and values such as ``BODY=8bitmime`` are case-insensitive (RFC 5321 §2.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from postier.mail.address import Address, parse_domain, parse_forward_path, parse_reverse_path
from postier.mail.envelope import BodyType, Notify, Recipient, Ret
from postier.mail.errors import AddressError, RemoteProtocolError
from postier.mail.replies import S
from postier.mail.reply import Reply

__all__ = [
    "MailParams",
    "parse_bdat",
    "parse_hello",
    "parse_mail",
    "parse_rcpt",
    "split_command",
    "xtext_decode",
    "xtext_encode",
]

# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 §3.3.
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")
# RFC 3461 §4: xtext = *( xchar / hexchar ), xchar = "!".."~" except "+" and "=".
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
_SIZE = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class MailParams:
    """ESMTP parameters of MAIL FROM, validated by the engine."""

    size: int | None = None  # RFC 1870 SIZE=
    body: BodyType | None = None  # RFC 6152 BODY= (None: not given, i.e. 7BIT)
    smtputf8: bool = False  # RFC 6531
    ret: Ret | None = None  # RFC 3461 RET=
    envid: str | None = None  # RFC 3461 ENVID=, decoded from xtext
    auth: str | None = None  # RFC 4954 AUTH=, decoded from xtext; "<>" when given as <>
    requiretls: bool = False  # RFC 8689 REQUIRETLS


_T = TypeVar("_T")

MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2


def split_command(line: bytes) -> tuple[str, bytes]:
    """``(VERB, argument bytes)``: the verb uppercased (ASCII; "" when not a word), the argument after
    one space. ``line`` has no CRLF."""
    verb, _, arg = line.partition(b" ")
    if not verb.isalpha() or not verb.isascii():
        return "", arg
    return verb.decode("ascii").upper(), arg


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 §4 xtext (``+2B`` → ``+``); raises ValueError when it is not xtext."""
    if _XTEXT.fullmatch(text) is None:
        raise ValueError("not xtext")
    if "+" not in text:
        return text
    return _HEXCHAR.sub(lambda m: chr(int(m[1], 16)), text)


def xtext_encode(text: str) -> str:
    """Encode ``text`` as RFC 3461 §4 xtext (for the client engine and round-trip tests)."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}" for c in text)


def _split_path(arg: str, bad: Reply) -> tuple[str, str]:
    """``("<path>", "params")``: the path ends at the first ``>`` outside a quoted string."""
    if not arg.startswith("<"):
        raise RemoteProtocolError(bad)
    end = arg.find(">")
    quote = arg.find('"')
    if quote != -1 and quote < end:  # a quoted local part may hold ">": walk it (≤ 256 chars)
        end, escaped, quoted = -1, False, False
        for i, char in enumerate(arg):
            if escaped:
                escaped = False
            elif char == "\\" and quoted:
                escaped = True
            elif char == '"':
                quoted = not quoted
            elif char == ">" and not quoted:
                end = i
                break
    if end == -1:
        raise RemoteProtocolError(bad)
    rest = arg[end + 1 :]
    if rest and not rest.startswith(" "):
        raise RemoteProtocolError(bad)
    return arg[: end + 1], rest


def _params(text: str) -> dict[str, str | None]:
    """``KEY[=value]`` words → {KEY: value}; unknown keys are the caller's to refuse."""
    params: dict[str, str | None] = {}
    for word in text.split(" "):
        if not word:
            continue  # lenient about doubled spaces
        key, eq, value = word.partition("=")
        if _KEYWORD.fullmatch(key) is None:
            raise RemoteProtocolError(S.SYNTAX_ERROR)
        if eq and _VALUE.fullmatch(value) is None:
            raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
        key = key.upper()
        if key in params:
            raise RemoteProtocolError(S.UNKNOWN_PARAMETER)  # duplicated: 555 5.5.4
        params[key] = value if eq else None
    return params


def _after_prefix(arg: bytes, prefix: bytes, bad: Reply) -> tuple[str, str]:
    if arg[: len(prefix)].upper() != prefix:
        raise RemoteProtocolError(S.SYNTAX_ERROR)
    try:
        text = arg[len(prefix) :].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(bad) from None
    return _split_path(text.lstrip(" "), bad)


def parse_mail(arg: bytes, *, max_message_bytes: int) -> tuple[Address | None, MailParams]:
    """``FROM:<reverse-path> [SP params]`` → sender and validated parameters."""
    path, rest = _after_prefix(arg, b"FROM:", S.BAD_SENDER_SYNTAX)
    params = _mail_params(_params(rest), max_message_bytes)
    try:
        sender = parse_reverse_path(path, allow_utf8=params.smtputf8)
    except AddressError as exc:
        raise RemoteProtocolError(exc.reply) from None
    return sender, params


_BODY = {kind.value: kind for kind in BodyType}
_RET = {kind.value: kind for kind in Ret}


def _mail_params(raw: dict[str, str | None], max_message_bytes: int) -> MailParams:
    size: int | None = None
    body: BodyType | None = None
    ret: Ret | None = None
    envid: str | None = None
    auth: str | None = None
    if raw.get("SMTPUTF8") is not None or raw.get("REQUIRETLS") is not None:  # RFC 6531 §3.4, 8689 §4
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
    for key, value in raw.items():
        if key in ("SMTPUTF8", "REQUIRETLS"):
            continue
        if key not in _MAIL_KEYS:
            raise RemoteProtocolError(S.UNKNOWN_PARAMETER)
        if value is None:
            raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
        if key == "SIZE":  # RFC 1870 §6
            if _SIZE.fullmatch(value) is None:
                raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
            size = int(value)
            if size > max_message_bytes:
                raise RemoteProtocolError(S.MESSAGE_TOO_BIG)
        elif key == "BODY":  # RFC 6152, RFC 3030 §3
            body = _choice(_BODY, value)
        elif key == "RET":  # RFC 3461 §4.3
            ret = _choice(_RET, value)
        elif key == "ENVID":  # RFC 3461 §4.4
            envid = _xtext(value, MAX_ENVID)
        else:  # AUTH, RFC 4954 §5
            auth = value if value == "<>" else _xtext(value, 500)
    return MailParams(size, body, "SMTPUTF8" in raw, ret, envid, auth, "REQUIRETLS" in raw)


_MAIL_KEYS = frozenset({"SIZE", "BODY", "RET", "ENVID", "AUTH"})


def _choice(choices: dict[str, _T], value: str) -> _T:
    try:
        return choices[value.upper()]
    except KeyError:
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE) from None


def _xtext(value: str, limit: int) -> str:
    try:
        decoded = xtext_decode(value)
    except ValueError:
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE) from None
    if len(value) > limit:
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
    return decoded


def parse_rcpt(arg: bytes, *, allow_utf8: bool) -> Recipient:
    """``TO:<forward-path> [SP params]`` → a Recipient with NOTIFY and ORCPT (RFC 3461 §4.1, §4.2)."""
    path, rest = _after_prefix(arg, b"TO:", S.BAD_RECIPIENT_SYNTAX)
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None
    for key, value in _params(rest).items():
        if key == "NOTIFY" and value is not None:
            notify = _notify(value)
        elif key == "ORCPT" and value is not None:
            orcpt = _orcpt(value)
        elif key in ("NOTIFY", "ORCPT"):
            raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
        else:
            raise RemoteProtocolError(S.UNKNOWN_PARAMETER)
    try:
        address = parse_forward_path(path, allow_utf8=allow_utf8)
    except AddressError as exc:
        raise RemoteProtocolError(exc.reply) from None
    return Recipient(address, notify, orcpt)


def _notify(value: str) -> frozenset[Notify]:
    """RFC 3461 §4.1: NEVER alone, or a comma list of SUCCESS, FAILURE, DELAY."""
    words = value.upper().split(",")
    try:
        kinds = frozenset(Notify(word) for word in words)
    except ValueError:
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE) from None
    if len(kinds) != len(words) or (Notify.NEVER in kinds and len(kinds) > 1):
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
    return kinds


def _orcpt(value: str) -> str:
    """RFC 3461 §4.2: ``addr-type ";" xtext`` → ``"rfc822;decoded"`` (addr-type as given)."""
    addr_type, semi, addr = value.partition(";")
    if not semi or not addr or _ATOM.fullmatch(addr_type) is None:
        raise RemoteProtocolError(S.BAD_PARAMETER_VALUE)
    return f"{addr_type};{_xtext(addr, MAX_ORCPT)}"


def parse_bdat(arg: bytes) -> tuple[int, bool] | None:
    """``chunk-size [SP "LAST"]`` (RFC 3030 §2) → (size, last), or None on bad syntax."""
    words = arg.split(b" ")
    if not 1 <= len(words) <= 2 or not words[0].isdigit() or len(words[0]) > 20:
        return None
    if len(words) == 2 and words[1].upper() != b"LAST":
        return None
    return int(words[0]), len(words) == 2


_HELLO_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)


def parse_hello(arg: bytes) -> tuple[str, bool]:
    """HELO/EHLO argument → ``(name, is_well_formed)``.

    RFC 5321 §4.1.1.1 wants a domain or an address literal; many real clients send bare hostnames,
    underscores or their NAT name, so any printable word is accepted and only flagged. A missing or
    empty argument, or one with control characters or invalid UTF-8, is 501 5.5.2.
    """
    try:
        text = arg.decode("utf-8").strip(" ")
    except UnicodeDecodeError:
        raise RemoteProtocolError(S.SYNTAX_ERROR) from None
    if not text or not text.isprintable():
        raise RemoteProtocolError(S.SYNTAX_ERROR)
    name, _, extra = text.partition(" ")
    if extra:
        return name, False
    if name.startswith("["):
        try:
            parse_domain(name, allow_utf8=False)
        except AddressError:
            return name, False
        return name, True
    return name, len(name) <= 255 and _HELLO_DOMAIN.fullmatch(name) is not None
