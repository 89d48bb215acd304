"""Envelope addresses (RFC 5321 §4.1.2 Mailbox) as values, and their parser.

``Address.local_part`` keeps the local part in its wire form (quoted when it was quoted: ``"john doe"``),
so ``str(address)`` is what goes back on the wire. ``Address.domain`` keeps the domain as received
(a dot-domain, a U-label domain under SMTPUTF8, or an address literal ``[192.0.2.1]`` /
``[IPv6:2001:db8::1]``); ``domain_key`` is the form to compare and route on.

Theory of operation of the parser: ``parse_reverse_path`` (MAIL FROM) and ``parse_forward_path``
(RCPT TO) take the path with its angle brackets, drop a source route (RFC 5321 §4.1.1.3: accepted and
ignored), check the octet limits of §4.5.3.1 and hand the mailbox to ``parse_mailbox``, which checks the
§4.1.2 grammar with compiled regular expressions (RFC 6531 widens atext, qtext and domains to UTF-8 when
``allow_utf8``). Failures raise ``AddressError`` carrying the reply to send: 501 5.1.7 for a sender,
501 5.1.3 for a recipient, 553 5.6.7 for a UTF-8 address without SMTPUTF8 (RFC 6531 §3.5).

``RCPT TO:<Postmaster>`` (no domain, any case) is legal (RFC 5321 §4.1.1.3); it parses to ``POSTMASTER``,
``Address("postmaster", "")``: the one address with an empty domain. Policy maps it to a local mailbox.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from postier.mail.errors import AddressError
from postier.mail.replies import S
from postier.mail.reply import Reply

__all__ = [
    "POSTMASTER",
    "Address",
    "parse_domain",
    "parse_forward_path",
    "parse_mailbox",
    "parse_reverse_path",
]


@dataclass(frozen=True, slots=True)
class Address:
    local_part: str
    domain: str

    def __str__(self) -> str:
        if not self.domain:  # the bare <Postmaster> of RFC 5321 §4.1.1.3
            return self.local_part
        return f"{self.local_part}@{self.domain}"

    @property
    def is_utf8(self) -> bool:
        """True when the address needs SMTPUTF8 (RFC 6531) to travel."""
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def is_literal(self) -> bool:
        """True for an address-literal domain such as ``[192.0.2.1]``."""
        return self.domain.startswith("[")

    @property
    def is_postmaster(self) -> bool:
        """True for the domain-less ``<Postmaster>`` recipient (RFC 5321 §4.1.1.3)."""
        return not self.domain and self.local_part.lower() == "postmaster"

    @property
    def domain_key(self) -> str:
        """The domain lowercased, without a trailing dot, IDNA A-label form: the key to route on."""
        domain = self.domain.rstrip(".").lower()
        if self.is_literal or domain.isascii():
            return domain
        from postier.mail.domain import to_ascii

        return to_ascii(domain)


POSTMASTER = Address("postmaster", "")
"""What ``RCPT TO:<Postmaster>`` parses to."""

# RFC 5321 §4.5.3.1: size limits, in octets.
MAX_PATH = 256  # §4.5.3.1.3, angle brackets included
MAX_LOCAL_PART = 64  # §4.5.3.1.1
MAX_DOMAIN = 255  # §4.5.3.1.2
MAX_LABEL = 63  # RFC 1035 §2.3.4

# RFC 5321 §4.1.2 and RFC 5322 §3.2.3 atext; RFC 6531 §3.3 adds UTF8-non-ascii.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*")
# Quoted-string: qtextSMTP = %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP = "\" %d32-126.
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
# sub-domain = Let-dig [Ldh-str]
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_LITERAL = re.compile(r"\[(?:(?P<v6>[Ii][Pp][Vv]6:)?(?P<addr>[0-9A-Fa-f:.]+))\]")


def _octets(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def parse_domain(domain: str, *, allow_utf8: bool, bad: Reply = S.BAD_RECIPIENT_SYNTAX) -> str:
    """Check a Domain or address-literal (RFC 5321 §4.1.2, §4.1.3) and return it unchanged.

    U-label domains are allowed only with ``allow_utf8`` and are validated with IDNA2008/UTS-46
    (the ``idna`` package); their A-label form must fit the length limits too.
    """
    if domain.startswith("["):
        _check_literal(domain, bad)
        return domain
    ascii_form = domain
    if not domain.isascii():
        if not allow_utf8:
            raise AddressError(S.UTF8_NOT_ALLOWED)
        from postier.mail.domain import to_ascii

        try:
            ascii_form = to_ascii(domain)
        except ValueError:
            raise AddressError(bad) from None
        if domain.endswith("."):
            raise AddressError(bad)
    if len(ascii_form) > MAX_DOMAIN or _DOMAIN.fullmatch(ascii_form) is None:
        raise AddressError(bad)
    if any(len(label) > MAX_LABEL for label in ascii_form.split(".")):
        raise AddressError(bad)
    if "xn--" in ascii_form.lower() and not _is_valid_a_label_domain(ascii_form):
        raise AddressError(bad)  # RFC 5890 §2.3.2.1: an A-label must decode to a valid U-label
    return domain


def _is_valid_a_label_domain(domain: str) -> bool:
    import idna

    try:
        idna.decode(domain)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def _check_literal(domain: str, bad: Reply) -> None:
    """RFC 5321 §4.1.3: IPv4 and ``IPv6:`` literals; general (tagged) literals are not routable here."""
    match = _LITERAL.fullmatch(domain)
    if match is None:
        raise AddressError(bad)
    try:
        if match["v6"]:
            ipaddress.IPv6Address(match["addr"])
        else:
            ipaddress.IPv4Address(match["addr"])
    except ValueError:
        raise AddressError(bad) from None


def parse_mailbox(text: str, *, allow_utf8: bool, bad: Reply = S.BAD_RECIPIENT_SYNTAX) -> Address:
    """Parse ``Local-part "@" ( Domain / address-literal )`` (RFC 5321 §4.1.2), no angle brackets."""
    local, at, domain = text.rpartition("@")  # a domain never holds "@"; a quoted local part may
    if not at or not local or not domain:
        raise AddressError(bad)
    if not (local.isascii() or allow_utf8):
        raise AddressError(S.UTF8_NOT_ALLOWED)
    if local.startswith('"'):
        pattern = _QUOTED_UTF8 if allow_utf8 else _QUOTED
    else:
        pattern = _DOT_STRING_UTF8 if allow_utf8 else _DOT_STRING
    if pattern.fullmatch(local) is None or _octets(local) > MAX_LOCAL_PART:
        raise AddressError(bad)
    return Address(local, parse_domain(domain, allow_utf8=allow_utf8, bad=bad))


def _strip_path(text: str, bad: Reply) -> str:
    """The mailbox inside ``"<" [ A-d-l ":" ] Mailbox ">"``; the source route is dropped (§4.1.1.3)."""
    if len(text) < 2 or text[0] != "<" or text[-1] != ">" or _octets(text) > MAX_PATH:
        raise AddressError(bad)
    inner = text[1:-1]
    if inner.startswith("@"):
        route, colon, inner = inner.partition(":")
        if not colon:
            raise AddressError(bad)
        for hop in route.split(","):
            if not hop.startswith("@"):
                raise AddressError(bad)
            parse_domain(hop[1:], allow_utf8=True, bad=bad)
    return inner


def parse_reverse_path(text: str, *, allow_utf8: bool) -> Address | None:
    """MAIL FROM's Reverse-path: ``<>`` gives None (the null sender, RFC 5321 §4.5.5)."""
    if text == "<>":
        return None
    mailbox = _strip_path(text, S.BAD_SENDER_SYNTAX)
    return parse_mailbox(mailbox, allow_utf8=allow_utf8, bad=S.BAD_SENDER_SYNTAX)


def parse_forward_path(text: str, *, allow_utf8: bool) -> Address:
    """RCPT TO's Forward-path, or ``<Postmaster>`` (any case, RFC 5321 §4.1.1.3) → ``POSTMASTER``."""
    if len(text) == 12 and text[1:-1].lower() == "postmaster" and text[0] == "<" and text[-1] == ">":
        return POSTMASTER
    mailbox = _strip_path(text, S.BAD_RECIPIENT_SYNTAX)
    return parse_mailbox(mailbox, allow_utf8=allow_utf8, bad=S.BAD_RECIPIENT_SYNTAX)
