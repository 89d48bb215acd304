"""Envelope address parsing (RFC 5321 §4.1.2, §4.1.3, §4.5.3.1; RFC 6531)."""

from __future__ import annotations

import pytest

from postier.mail.address import (
    POSTMASTER,
    Address,
    parse_domain,
    parse_forward_path,
    parse_mailbox,
    parse_reverse_path,
)
from postier.mail.errors import AddressError

GOOD = [
    ("<user@example.org>", False, Address("user", "example.org")),
    ("<first.last+tag@sub.example.org>", False, Address("first.last+tag", "sub.example.org")),
    ("<!#$%&'*+-/=?^_`{|}~@example.org>", False, Address("!#$%&'*+-/=?^_`{|}~", "example.org")),
    ('<"john doe"@example.org>', False, Address('"john doe"', "example.org")),
    ('<"a>b@c"@example.org>', False, Address('"a>b@c"', "example.org")),
    ('<"quoted\\"pair"@example.org>', False, Address('"quoted\\"pair"', "example.org")),
    ("<user@[192.0.2.1]>", False, Address("user", "[192.0.2.1]")),
    ("<user@[IPv6:2001:db8::1]>", False, Address("user", "[IPv6:2001:db8::1]")),
    ("<user@[ipv6:::1]>", False, Address("user", "[ipv6:::1]")),
    ("<@relay.example:user@example.org>", False, Address("user", "example.org")),
    ("<@a.example,@b.example:user@example.org>", False, Address("user", "example.org")),
    ("<user@localhost>", False, Address("user", "localhost")),
    ("<δοκιμή@παράδειγμα.δοκιμή>", True, Address("δοκιμή", "παράδειγμα.δοκιμή")),
    ("<user@bücher.example>", True, Address("user", "bücher.example")),
    ("<用户@example.org>", True, Address("用户", "example.org")),
]


@pytest.mark.parametrize(("text", "utf8", "expected"), GOOD)
def test_valid_paths_parse(text: str, utf8: bool, expected: Address) -> None:
    assert parse_forward_path(text, allow_utf8=utf8) == expected
    assert parse_reverse_path(text, allow_utf8=utf8) == expected


BAD = [
    ("user@example.org", "5.1.3"),  # no angle brackets
    ("<user@example.org", "5.1.3"),
    ("<>", "5.1.3"),  # null path is for MAIL only
    ("<user>", "5.1.3"),  # no domain (only Postmaster may omit it)
    ("<@example.org>", "5.1.3"),
    ("<user@>", "5.1.3"),
    ("<user@@example.org>", "5.1.3"),
    ("<.user@example.org>", "5.1.3"),
    ("<us..er@example.org>", "5.1.3"),
    ("<user.@example.org>", "5.1.3"),
    ("<us er@example.org>", "5.1.3"),
    ('<"unterminated@example.org>', "5.1.3"),
    ("<user@-example.org>", "5.1.3"),
    ("<user@example-.org>", "5.1.3"),
    ("<user@exa_mple.org>", "5.1.3"),
    ("<user@example..org>", "5.1.3"),
    ("<user@example.org.>", "5.1.3"),
    ("<user@[192.0.2.256]>", "5.1.3"),
    ("<user@[2001:db8::1]>", "5.1.3"),  # IPv6 needs its tag
    ("<user@[IPv6:2001:db8::g]>", "5.1.3"),
    ("<user@[tag:value]>", "5.1.3"),  # general literals are not routable here
    ("<relay.example:user@example.org>", "5.1.3"),
    ("<@relay.example,user@example.org>", "5.1.3"),
    ("<δοκιμή@example.org>", "5.6.7"),  # UTF-8 without SMTPUTF8
    ("<user@παράδειγμα.δοκιμή>", "5.6.7"),
    ("<" + "a" * 65 + "@example.org>", "5.1.3"),  # §4.5.3.1.1: local part ≤ 64
    ("<a@" + "b" * 64 + ".example>", "5.1.3"),  # label ≤ 63
    ("<a@" + ("b" * 60 + ".") * 5 + "org>", "5.1.3"),  # path ≤ 256
]


@pytest.mark.parametrize(("text", "status"), BAD)
def test_invalid_recipient_paths_raise_with_the_reply(text: str, status: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_forward_path(text, allow_utf8=False)
    assert str(caught.value.reply.status) == status
    assert caught.value.reply.code == (553 if status == "5.6.7" else 501)


def test_sender_errors_use_the_sender_status() -> None:
    with pytest.raises(AddressError) as caught:
        parse_reverse_path("<user@>", allow_utf8=False)
    assert (caught.value.reply.code, str(caught.value.reply.status)) == (501, "5.1.7")


def test_null_reverse_path_is_none() -> None:
    assert parse_reverse_path("<>", allow_utf8=False) is None


@pytest.mark.parametrize("text", ["<Postmaster>", "<postmaster>", "<POSTMASTER>"])
def test_bare_postmaster_is_a_legal_recipient(text: str) -> None:
    address = parse_forward_path(text, allow_utf8=False)
    assert address == POSTMASTER
    assert address.is_postmaster
    assert str(address) == "postmaster"


def test_postmaster_with_a_domain_is_an_ordinary_address() -> None:
    address = parse_forward_path("<Postmaster@example.org>", allow_utf8=False)
    assert address == Address("Postmaster", "example.org")
    assert not address.is_postmaster


def test_bare_postmaster_is_not_a_sender() -> None:
    with pytest.raises(AddressError):
        parse_reverse_path("<Postmaster>", allow_utf8=False)


def test_limits_are_inclusive() -> None:
    local = "a" * 64
    assert parse_mailbox(f"{local}@example.org", allow_utf8=False).local_part == local
    label = "b" * 63
    assert parse_domain(f"{label}.example", allow_utf8=False) == f"{label}.example"


def test_address_properties() -> None:
    assert Address("a", "[192.0.2.1]").is_literal
    assert Address("δ", "example.org").is_utf8
    assert Address("a", "Bücher.Example.").domain_key == "xn--bcher-kva.example"
    assert str(Address('"a b"', "example.org")) == '"a b"@example.org'


def test_invalid_idn_is_refused() -> None:
    with pytest.raises(AddressError):
        parse_domain("xn--a.example", allow_utf8=True)
    with pytest.raises(AddressError):
        parse_domain("a\u200db.example", allow_utf8=True)  # ZWJ not allowed in this context
