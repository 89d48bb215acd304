"""DANE for SMTP (RFC 7672, RFC 6698, RFC 7671), the pure half: TLSA records and certificate matching.

Theory of operation. An MX host ``mx.example.org`` publishes ``_25._tcp.mx.example.org TLSA`` records
``usage selector matching-type data``. Only DANE-TA (2) and DANE-EE (3) are used for SMTP (RFC 7672
§3.1: PKIX-TA/EE are unusable); selector 0 is the whole certificate, 1 its SubjectPublicKeyInfo;
matching type 0 is the data itself, 1 SHA-256, 2 SHA-512. A record with anything else is unusable.

``check_chain(records, chain, names, now)`` decides a connection, given the server's chain (leaf
first, DER, as sent):

- DANE-EE (3): the leaf matches; names and dates are not checked (RFC 7672 §3.1.1);
- DANE-TA (2): some certificate of the chain above the leaf — or, with a full key or certificate in
  the record, a trust anchor the server did not send (RFC 7671 §5.2.2) — matches; the leaf must chain
  up to it by signatures, be within its dates and name one of ``names`` (the MX host name, RFC 7672
  §3.2.3; ``*.`` wildcards one label deep).

It returns None when the connection is authenticated, else why not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["Tlsa", "check_chain", "parse_tlsa", "tlsa_name", "usable"]

DANE_TA, DANE_EE = 2, 3


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    @property
    def is_usable(self) -> bool:
        return self.usage in (DANE_TA, DANE_EE) and self.selector in (0, 1) and self.mtype in (0, 1, 2)


def tlsa_name(host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{host.rstrip('.').lower()}"


def parse_tlsa(text: str) -> Tlsa | None:
    """``"3 1 1 ab12…"`` (presentation form, hex possibly split by spaces); None when malformed."""
    parts = text.split()
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    try:
        data = bytes.fromhex("".join(parts[3:]))
    except ValueError:
        return None
    usage, selector, mtype = (int(p) for p in parts[:3])
    if max(usage, selector, mtype) > 255:
        return None
    return Tlsa(usage, selector, mtype, data)


def usable(records: Iterable[Tlsa]) -> list[Tlsa]:
    return [r for r in records if r.is_usable]


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(Encoding.DER)
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _matches(record: Tlsa, cert: x509.Certificate) -> bool:
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def check_chain(
    records: Sequence[Tlsa], chain_der: Sequence[bytes], names: Sequence[str], now: datetime
) -> str | None:
    """None when the chain is authenticated by one of ``records``; else why not."""
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        return "the server's certificate does not parse"
    if not chain:
        return "the server sent no certificate"
    leaf = chain[0]
    good = usable(records)
    if any(r.usage == DANE_EE and _matches(r, leaf) for r in good):
        return None
    anchors = [r for r in good if r.usage == DANE_TA]
    if not anchors:
        return "no DANE-EE record matches the server's certificate"
    problem = _leaf_problem(leaf, names, now)
    if problem is not None:
        return problem
    for depth in range(1, len(chain)):
        if any(_matches(r, chain[depth]) for r in anchors) and _signed_up_to(chain, depth):
            return None
    for record in anchors:  # RFC 7671 §5.2.2: a full trust anchor in DNS need not be sent
        if record.mtype == 0 and _issued_by_key(chain, record):
            return None
    return "no DANE-TA record matches a certificate of the server's chain"


def _leaf_problem(leaf: x509.Certificate, names: Sequence[str], now: datetime) -> str | None:
    if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
        return "the server's certificate is outside its validity dates"
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    if not any(_name_matches(n, want) for n in dns_names for want in names):
        return f"the server's certificate names none of {', '.join(names)}"
    return None


def _name_matches(presented: str, host: str) -> bool:
    presented, host = presented.lower().rstrip("."), host.lower().rstrip(".")
    if presented.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == presented[2:]
    return presented == host


def _signed_up_to(chain: Sequence[x509.Certificate], depth: int) -> bool:
    """Each certificate from the leaf up to ``chain[depth]`` is signed by the next one."""
    try:
        for i in range(depth):
            chain[i].verify_directly_issued_by(chain[i + 1])
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issued_by_key(chain: Sequence[x509.Certificate], record: Tlsa) -> bool:
    """Some certificate of the chain (leaf included) was signed by the certificate the record holds
    (``2 0 0``); a bare key (``2 1 0``) is only matched against certificates the server sent."""
    if record.selector != 0:
        return False
    try:
        anchor = x509.load_der_x509_certificate(record.data)
    except ValueError:
        return False
    for depth, cert in enumerate(chain):
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return _signed_up_to(chain, depth)
    return False
