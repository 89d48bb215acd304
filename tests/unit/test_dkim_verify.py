"""DKIM verification and ARC chain validation against messages signed by dkimpy (a third-party signer),
keys served by a ``RecordLookup`` over zone data."""

from __future__ import annotations

import dkim
import pytest
from mailauthzone import TIMEOUT, ZoneLookup
from tests.dkimkeys import SigningKey, ed25519_key, rsa_key

from postier.mailauth.arcverify import check_arc
from postier.mailauth.dkimverify import check_dkim

MESSAGE = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n"
    b"Message-ID: <1@example.com>\r\n\r\nHello Bob.\r\n"
)
RSA = rsa_key(2048)
ED = ed25519_key()
WEAK = rsa_key(768)


def _sign(
    message: bytes, selector: str, domain: str, key: SigningKey, algorithm: bytes = b"rsa-sha256"
) -> bytes:
    return (
        dkim.sign(  # type: ignore[no-any-return]
            message, selector.encode(), domain.encode(), key.private, signature_algorithm=algorithm
        )
        + message
    )


ZONE = {
    "rsa._domainkey.example.com": {"TXT": [RSA.record]},
    "ed._domainkey.example.com": {"TXT": [ED.record]},
    "weak._domainkey.example.org": {"TXT": [WEAK.record]},
    "slow._domainkey.example.com": TIMEOUT,
}


async def test_rsa_and_ed25519_signatures_pass_one_result_each() -> None:
    signed = _sign(_sign(MESSAGE, "rsa", "example.com", RSA), "ed", "example.com", ED, b"ed25519-sha256")
    results = await check_dkim(ZoneLookup(ZONE), signed)
    assert [(r.result, r.selector, r.algorithm) for r in results] == [
        ("pass", "ed", "ed25519-sha256"),
        ("pass", "rsa", "rsa-sha256"),
    ]
    assert all(r.domain == "example.com" and len(r.b) == 12 for r in results)


@pytest.mark.parametrize(
    ("change", "result", "reason"),
    [
        (lambda m: m.replace(b"Hello Bob.", b"Hello Eve."), "fail", "body hash mismatch"),
        (lambda m: m.replace(b"Subject: hello", b"Subject: HELLO"), "fail", "signature did not verify"),
    ],
)
async def test_altered_messages_fail(change: object, result: str, reason: str) -> None:
    signed = _sign(MESSAGE, "rsa", "example.com", RSA)
    (found,) = await check_dkim(ZoneLookup(ZONE), change(signed))  # type: ignore[operator]
    assert (found.result, found.reason) == (result, reason)


async def test_rsa_keys_under_1024_bits_fail() -> None:
    (found,) = await check_dkim(ZoneLookup(ZONE), _sign(MESSAGE, "weak", "example.org", WEAK))
    assert found.result == "fail"
    assert "too small" in found.reason


async def test_missing_key_is_permerror_and_dns_failure_temperror() -> None:
    missing = await check_dkim(ZoneLookup(ZONE), _sign(MESSAGE, "gone", "example.com", RSA))
    slow = await check_dkim(ZoneLookup(ZONE), _sign(MESSAGE, "slow", "example.com", RSA))
    assert [r.result for r in missing + slow] == ["permerror", "temperror"]


async def test_malformed_signature_is_permerror() -> None:
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; b=!!!; bh=???\r\n" + MESSAGE
    (found,) = await check_dkim(ZoneLookup(ZONE), bad)
    assert found.result == "permerror"


async def test_signatures_over_the_limit_are_not_checked() -> None:
    signed = MESSAGE
    for _ in range(4):
        signed = _sign(signed, "rsa", "example.com", RSA)
    lookup = ZoneLookup(ZONE)
    results = await check_dkim(lookup, signed, max_signatures=2)
    assert [r.result for r in results] == ["pass", "pass", "policy", "policy"]
    assert lookup.asked == [("rsa._domainkey.example.com", "TXT")]


async def test_no_signature_no_result() -> None:
    assert await check_dkim(ZoneLookup(ZONE), MESSAGE) == []


def _arc_seal(message: bytes, domain: str, selector: str, key: SigningKey, srv_id: bytes) -> bytes:
    headers = dkim.arc_sign(message, selector.encode(), domain.encode(), key.private, srv_id)
    return b"".join(headers) + message


async def test_arc_chain_of_two_forwarders_passes() -> None:
    zone = {**ZONE, "arc._domainkey.list.example": {"TXT": [RSA.record]}}
    signed = _sign(MESSAGE, "rsa", "example.com", RSA)
    first = _arc_seal(
        b"Authentication-Results: list.example; dkim=pass header.d=example.com\r\n" + signed,
        "list.example",
        "arc",
        RSA,
        b"list.example",
    )
    second = _arc_seal(
        b"Authentication-Results: fwd.example.com; arc=pass\r\n" + first,
        "example.com",
        "rsa",
        RSA,
        b"fwd.example.com",
    )
    result = await check_arc(ZoneLookup(zone), second)
    assert (result.result, result.sealers, result.instances) == ("pass", ("example.com", "list.example"), 2)
    broken = await check_arc(ZoneLookup(zone), second.replace(b"Hello Bob.", b"Hello Eve."))
    assert broken.result == "fail"


async def test_no_arc_is_none_and_dns_failure_temperror() -> None:
    assert (await check_arc(ZoneLookup(ZONE), MESSAGE)).result == "none"
    sealed = _arc_seal(
        b"Authentication-Results: slow.example; none\r\n" + MESSAGE,
        "example.com",
        "slow",
        RSA,
        b"slow.example",
    )
    assert (await check_arc(ZoneLookup(ZONE), sealed)).result == "temperror"


async def test_our_arc_seal_verifies_and_extends_a_chain() -> None:
    from cryptography.hazmat.primitives import serialization

    from postier.mailauth.arcseal import arc_seal
    from postier.mailauth.dkim import SigningKey

    private = serialization.load_pem_private_key(RSA.private, None)
    key = SigningKey("fwd.example", "arc", private)  # type: ignore[arg-type]
    zone = {**ZONE, "arc._domainkey.fwd.example": {"TXT": [RSA.record]}}
    ours = b"Authentication-Results: mx.fwd.example; spf=pass smtp.mailfrom=a@example.com; arc=none\r\n"
    first = arc_seal(ours + MESSAGE, key, "mx.fwd.example") + ours + MESSAGE
    assert (await check_arc(ZoneLookup(zone), first)).result == "pass"
    hop2 = b"Authentication-Results: mx2.fwd.example; arc=pass\r\n"  # the next forwarder's
    again = hop2 + first
    second = arc_seal(again, key, "mx2.fwd.example") + again
    result = await check_arc(ZoneLookup(zone), second)
    assert (result.result, result.instances) == ("pass", 2)
    assert arc_seal(MESSAGE, key, "mx.fwd.example") == b""  # no results of ours to seal
