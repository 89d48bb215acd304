"""The signer against dkimpy's verifier (both algorithms), the oversigned fields, t= and x=, and the
DNS records: what we print, and which published records count as matching."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import dkim
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mailauth.dkim.canon import RelaxedBodyHash, relaxed_body
from postier.mailauth.dkim.choose import from_domain, host_domain
from postier.mailauth.dkim.keys import generate_key, public_record, record_problem, zone_line
from postier.mailauth.dkim.signer import DkimSigner, SigningKey, sign_message
from postier.server.signing import sign_spooled
from postier.spool import MessageBody, SpoolFile

ED, RSA = generate_key("ed25519"), generate_key("rsa")
RECORDS = {
    b"ed._domainkey.example.org.": public_record(ED).encode(),
    b"rsa._domainkey.example.org.": public_record(RSA).encode(),
}
NOW = int(time.time())  # dkimpy refuses a t= in the future
KEYS = (SigningKey("example.org", "ed", ED), SigningKey("example.org", "rsa", RSA))
MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@far.test>\r\n"
    b"Subject: a long subject that is folded\r\n over two lines\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"X-Mailer: not signed\r\n"
    b"\r\n"
    b"Hello Bob,  with  spaces \t\r\n" + b"long line " * 90 + b"\r\n\r\n\r\n"
)


def _dns(name: bytes, timeout: float = 5) -> bytes | None:
    return RECORDS.get(name)


def _verify(message: bytes) -> list[bool]:
    out = []
    for i in range(message.count(b"DKIM-Signature:")):
        try:
            out.append(bool(dkim.DKIM(message).verify(idx=i, dnsfunc=_dns)))
        except dkim.DKIMException:
            out.append(False)
    return out


def _tags(field: bytes) -> dict[str, str]:
    value = re.sub(rb"\s+", b"", field.split(b":", 1)[1]).decode()
    return dict(part.split("=", 1) for part in value.split(";") if part)


def test_both_algorithms_verify_with_dkimpy() -> None:
    fields = sign_message(MESSAGE, KEYS, now=NOW, expire_s=86400)
    assert _verify(fields + MESSAGE) == [True, True]
    first, second = fields.split(b"\r\nDKIM-Signature:")
    assert _tags(first)["a"] == "ed25519-sha256" and _tags(b"x:" + second)["a"] == "rsa-sha256"
    tags = _tags(first)
    assert (tags["t"], tags["x"], tags["c"], tags["d"], tags["s"]) == (
        str(NOW),
        str(NOW + 86400),
        "relaxed/relaxed",
        "example.org",
        "ed",
    )
    assert all(len(line) <= 78 for line in fields.split(b"\r\n"))


def test_oversigned_fields_cannot_be_added() -> None:
    fields = sign_message(MESSAGE, KEYS[:1], now=NOW)
    h = _tags(fields)["h"].split(":")
    assert h.count("from") == 2 and h.count("subject") == 2 and h.count("cc") == 1
    assert "list-unsubscribe-post" in h and "x-mailer" not in h
    signed = fields + MESSAGE
    assert _verify(signed) == [True]
    assert _verify(signed.replace(b"X-Mailer", b"Cc: eve@evil.test\r\nX-Mailer")) == [False]
    assert _verify(signed.replace(b"X-Mailer: not signed", b"X-Mailer: changed")) == [True]  # unsigned
    assert _verify(signed.replace(b"Hello Bob", b"Hello Eve")) == [False]


def test_no_x_without_expiry_and_nothing_without_keys() -> None:
    assert "x" not in _tags(sign_message(MESSAGE, KEYS[:1], now=1.0))
    assert sign_message(MESSAGE, (), now=1.0) == b""
    signer = DkimSigner({"example.org": KEYS}, clock=time.time)
    assert signer.sign(MESSAGE, "other.test") == b""
    assert _verify(signer.sign(MESSAGE, "example.org") + MESSAGE) == [True, True]
    assert DkimSigner().is_empty and not signer.is_empty


def test_record_problems() -> None:
    assert record_problem(ED, public_record(ED)) is None
    assert record_problem(RSA, public_record(RSA)) is None
    assert record_problem(ED, public_record(generate_key("ed25519"))) == "p= is another key"
    assert record_problem(ED, public_record(RSA)) == "k=rsa but the key is ed25519"
    assert record_problem(RSA, "v=DKIM1; p=") == "p= is empty: the key is revoked"
    assert record_problem(RSA, "v=DKIM1; h=sha1; " + public_record(RSA)[8:]) == "h=sha1 does not allow sha256"
    assert record_problem(ED, "v=spf1 -all") is not None


def test_zone_line_splits_long_records_into_255_octet_strings() -> None:
    line = zone_line("rsa1", "example.org", RSA)
    assert line.startswith("rsa1._domainkey.example.org. IN TXT ")
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == public_record(RSA)
    assert zone_line("ed", "example.org", ED).count('"') == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"From: Alice <alice@Example.ORG>\r\n\r\n", "example.org"),
        (b"From: alice@example.org, bob@example.org\r\n\r\n", "example.org"),
        (b"From: alice@example.org, bob@other.test\r\n\r\n", None),
        (b"From: a@example.org\r\nFrom: b@example.org\r\n\r\n", None),
        (b"Subject: no from\r\n\r\n", None),
        (b"From: =?utf-8?q?J=C3=B6rg?= <j@b\xc3\xbccher.example>\r\n\r\n", "xn--bcher-kva.example"),
        (b"From: undisclosed\r\n\r\n", None),
    ],
)
def test_from_domain(header: bytes, expected: str | None) -> None:
    assert from_domain(header) == expected


def test_host_domain_is_the_host_or_its_nearest_parent_with_a_key() -> None:
    signer = DkimSigner({"example.org": KEYS[:1], "mx.other.test": KEYS[1:]})
    assert host_domain(signer, "mx.example.org") == "example.org"
    assert host_domain(signer, "mx.other.test") == "mx.other.test"
    assert host_domain(signer, "mx.third.test") is None


# --- a large message signed from its spool file (issue 14: 2) ------------------------------------


@given(
    st.lists(st.sampled_from([b"a", b" ", b"\t", b"  x", b"\r\n", b"\r\n\r\n", b"word  \r\n"]), max_size=60),
    st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_the_body_hash_in_pieces_equals_the_whole(pieces: list[bytes], cuts: list[int]) -> None:
    body = b"".join(pieces) + b"\r\n"  # SMTP bodies end with CRLF (DATA always)
    hasher = RelaxedBodyHash()
    start = 0
    for cut in sorted(c for c in cuts if c <= len(body)):
        hasher.update(body[start:cut])
        start = cut
    hasher.update(body[start:])
    assert hasher.digest() == hashlib.sha256(relaxed_body(body)).digest()


def test_a_spooled_message_signs_as_the_whole_would(tmp_path: Path) -> None:
    signer = DkimSigner({"example.org": KEYS[:1]}, clock=lambda: NOW)
    big = MESSAGE + (b"line of the body  \r\n" * 50_000) + b"\r\n\r\n"
    spool = SpoolFile(tmp_path)
    spool.write([big[100:]])
    body = MessageBody(big[:100], spool)
    try:
        fields = sign_spooled(signer, body, "example.org")
    finally:
        body.close()
    assert fields == signer.sign(big, "example.org")
    assert _verify(fields + big) == [True]
