from __future__ import annotations

from base64 import b64encode

import pytest

from postier.server.sasl import Challenge, Credentials, Malformed, SaslExchange


def b64(raw: bytes) -> str:
    return b64encode(raw).decode()


@pytest.mark.parametrize(
    ("initial", "expected"),
    [
        (b64(b"\x00alice\x00pw"), Credentials("", "alice", "pw")),
        (b64(b"admin\x00alice\x00pw"), Credentials("admin", "alice", "pw")),
        (b64("\x00zoë\x00päss".encode()), Credentials("", "zoë", "päss")),
        (b64(b"\x00\x00pw"), Malformed()),  # empty authcid
        (b64(b"alice\x00pw"), Malformed()),  # one NUL only
        (b64(b"\x00alice\x00pw\x00x"), Malformed()),
        (b64(b"\x00\xff\x00pw"), Malformed()),  # not UTF-8
        ("not base64!", Malformed()),
        ("=", Malformed()),  # empty initial response: no credentials in it
    ],
)
def test_plain_initial_response(initial: str, expected: object) -> None:
    assert SaslExchange("PLAIN").start(initial) == expected


def test_plain_without_initial_response_asks_with_an_empty_challenge() -> None:
    exchange = SaslExchange("PLAIN")
    assert exchange.start(None) == Challenge("")
    assert exchange.respond(b64(b"\x00bob\x00pw")) == Credentials("", "bob", "pw")


def test_login_exchange() -> None:
    exchange = SaslExchange("LOGIN")
    assert exchange.start(None) == Challenge(b64(b"Username:"))
    assert exchange.respond(b64(b"bob")) == Challenge(b64(b"Password:"))
    assert exchange.respond(b64(b"pw")) == Credentials("", "bob", "pw")


def test_login_with_initial_username() -> None:
    exchange = SaslExchange("LOGIN")
    assert exchange.start(b64(b"bob")) == Challenge(b64(b"Password:"))


def test_credentials_repr_hides_the_password() -> None:
    assert "pw" not in repr(Credentials("", "bob", "pw"))


def test_unknown_mechanism() -> None:
    with pytest.raises(ValueError):
        SaslExchange("CRAM-MD5")
