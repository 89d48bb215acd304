"""Hypothesis: our relaxed canonicalisation equals dkimpy's, and every message we sign verifies
with dkimpy (both algorithms) — folded, 8-bit, long-lined, trailing-blank-line messages included —
and stops verifying when its body changes."""

from __future__ import annotations

import time

import dkim
from dkim.canonicalization import Relaxed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.mailauth.dkim.canon import relaxed_body, relaxed_header
from postier.mailauth.dkim.keys import generate_key, public_record
from postier.mailauth.dkim.signer import SigningKey, _canonical, _unsigned_field, sign_message

_TEXT = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c not in (10, 13)))
_WSP = st.sampled_from([b" ", b"\t", b"  ", b" \t ", b""])
_LINE = st.lists(st.one_of(_TEXT, _WSP), max_size=8).map(b"".join)
BODIES = st.lists(_LINE, max_size=12).map(lambda lines: b"".join(line + b"\r\n" for line in lines))

_NAME = st.sampled_from([b"Subject", b"To", b"Cc", b"X-Thing", b"Date", b"Reply-To", b"List-Id"])
# Not VT and FF: dkimpy strips them (Python's bytes.strip) where RFC 6376 strips only SP and HTAB;
# neither is allowed in a header field anyway (RFC 5322 §2.2).
_VALUE_LINE = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes(c for c in b if c not in (10, 11, 12, 13, 58)) or b"v"
)
_FOLDED = st.lists(st.tuples(_WSP, _VALUE_LINE), min_size=1, max_size=3).map(
    lambda parts: b"\r\n".join((b" " if i and not w else w) + v for i, (w, v) in enumerate(parts))
)
FIELDS = st.lists(st.tuples(_NAME, _WSP, _FOLDED), max_size=6)

ED, RSA = generate_key("ed25519"), generate_key("rsa")
KEYS = (SigningKey("example.org", "ed", ED), SigningKey("example.org", "rsa", RSA))
RECORDS = {
    b"ed._domainkey.example.org.": public_record(ED),
    b"rsa._domainkey.example.org.": public_record(RSA),
}


def _dns(name: bytes, timeout: float = 5) -> bytes | None:
    return RECORDS[name].encode()


def dkimpy_verify(message: bytes) -> list[bool]:
    out = []
    for i in range(2):
        try:
            out.append(bool(dkim.DKIM(message).verify(idx=i, dnsfunc=_dns)))
        except dkim.DKIMException:
            out.append(False)
    return out


@given(BODIES)
def test_relaxed_body_matches_dkimpy(body: bytes) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(_NAME, _WSP, _FOLDED)
def test_relaxed_header_matches_dkimpy(name: bytes, wsp: bytes, value: bytes) -> None:
    field = name + wsp + b":" + value
    [(dk_name, dk_value)] = Relaxed.canonicalize_headers([(name + wsp, value)])
    assert relaxed_header(field) + b"\r\n" == dk_name + b":" + dk_value


def _message(fields: list[tuple[bytes, bytes, bytes]], body: bytes) -> bytes:
    """(dkimpy's parser refuses the obsolete WSP between a field name and its colon.)"""
    header = b"From: Alice <alice@example.org>\r\n"
    header += b"".join(name + b":" + wsp + value + b"\r\n" for name, wsp, value in fields)
    return header + b"\r\n" + body


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(FIELDS, BODIES)
def test_signed_messages_verify_and_altered_ones_fail(
    fields: list[tuple[bytes, bytes, bytes]], body: bytes
) -> None:
    message = _message(fields, body)
    signed = sign_message(message, KEYS, now=time.time()) + message
    assert dkimpy_verify(signed) == [True, True]
    altered = signed + b"appended line\r\n"
    assert dkimpy_verify(altered) == [False, False]


@given(
    st.lists(
        st.sampled_from([b"from", b"to", b"subject", b"list-unsubscribe-post"]), min_size=1, max_size=40
    ),
    st.integers(min_value=0, max_value=2**40),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**40)),
)
def test_the_signature_field_shortcut_equals_relaxed_canonicalisation(
    names: list[bytes], t: int, x: int | None
) -> None:
    field = _unsigned_field(KEYS[0], tuple(names), "bh+/=", t, x)
    assert _canonical(field) == relaxed_header(field.encode())
    assert all(len(line) <= 78 for line in field.split("\r\n"))
