"""DANE matching (RFC 7672 §3, RFC 6698 §2.1): TLSA parsing, DANE-EE and DANE-TA over trustme chains."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postier.delivery.security.dane import Tlsa, check_chain, parse_tlsa, usable


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def record(usage: int, selector: int, mtype: int, cert_der: bytes) -> Tlsa:
    cert = x509.load_der_x509_certificate(cert_der)
    data = (
        cert_der
        if selector == 0
        else cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return Tlsa(usage, selector, mtype, data)


@pytest.fixture(scope="module")
def chain() -> tuple[list[bytes], bytes]:
    """(leaf + intermediate as a server sends them, the root)."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("mx.example.test")
    return [der(p.bytes()) for p in leaf.cert_chain_pems], der(root.cert_pem.bytes())


NOW = datetime.now(UTC)
NAMES = ["mx.example.test"]


def test_parse_tlsa() -> None:
    assert parse_tlsa("3 1 1 ABCD ef01") == Tlsa(3, 1, 1, bytes.fromhex("abcdef01"))
    assert parse_tlsa("3 1 1") is None
    assert parse_tlsa("3 1 1 xyz") is None
    assert usable([Tlsa(1, 1, 1, b""), Tlsa(3, 1, 3, b""), Tlsa(2, 0, 0, b"")]) == [Tlsa(2, 0, 0, b"")]


@pytest.mark.parametrize(("selector", "mtype"), [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])
def test_dane_ee_every_selector_and_matching_type(
    chain: tuple[list[bytes], bytes], selector: int, mtype: int
) -> None:
    sent, _ = chain
    assert check_chain([record(3, selector, mtype, sent[0])], sent, ["other.name"], NOW) is None


def test_dane_ee_ignores_names_and_dates(chain: tuple[list[bytes], bytes]) -> None:
    sent, _ = chain
    later = NOW + timedelta(days=3650)
    assert check_chain([record(3, 1, 1, sent[0])], sent, ["x.test"], later) is None


def test_dane_ee_mismatch(chain: tuple[list[bytes], bytes]) -> None:
    sent, _ = chain
    problem = check_chain([Tlsa(3, 1, 1, b"\0" * 32)], sent, NAMES, NOW)
    assert problem == "no DANE-EE record matches the server's certificate"


def test_dane_ta_on_the_intermediate_checks_name_and_dates(chain: tuple[list[bytes], bytes]) -> None:
    sent, _ = chain
    ta = [record(2, 0, 1, sent[1])]
    assert check_chain(ta, sent, NAMES, NOW) is None
    assert "names none of" in (check_chain(ta, sent, ["evil.test"], NOW) or "")
    assert "validity" in (check_chain(ta, sent, NAMES, datetime(1990, 1, 1, tzinfo=UTC)) or "")


def test_dane_ta_full_root_not_sent(chain: tuple[list[bytes], bytes]) -> None:
    sent, root = chain
    assert check_chain([record(2, 0, 0, root)], sent, NAMES, NOW) is None  # RFC 7671 §5.2.2
    assert check_chain([record(2, 0, 1, root)], sent, NAMES, NOW) is not None  # a digest of an unsent root


def test_dane_ta_rejects_a_forged_chain(chain: tuple[list[bytes], bytes]) -> None:
    sent, _ = chain
    stranger = trustme.CA().create_child_ca()
    forged = [sent[0], der(stranger.cert_pem.bytes())]
    assert check_chain([record(2, 0, 1, forged[1])], forged, NAMES, NOW) is not None
