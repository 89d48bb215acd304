"""DKIM keys and their DNS records (RFC 6376 §3.6.1, RFC 8463 §4).

Theory of operation: a private key is either RSA (``rsa-sha256``, 2048 bits by default; RFC 8301
asks for at least 1024, receivers commonly refuse less) or Ed25519 (``ed25519-sha256``, RFC 8463).
Its public half is published as TXT at ``SELECTOR._domainkey.DOMAIN``:

- RSA: ``v=DKIM1; k=rsa; p=`` base64 of the DER SubjectPublicKeyInfo;
- Ed25519: ``v=DKIM1; k=ed25519; p=`` base64 of the 32 raw public-key octets (RFC 8463 §4.2).

``record_problem`` compares a published record with our key: None when it matches, else why not (a
key whose record does not match is never used to sign). Pure: the lookup itself is ``records.py``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "Algorithm",
    "PrivateKey",
    "algorithm_of",
    "generate_key",
    "key_from_pem",
    "key_to_pem",
    "parse_tags",
    "public_record",
    "record_name",
    "record_problem",
    "zone_line",
]

Algorithm = Literal["ed25519", "rsa"]
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: verifiers must refuse smaller keys


def generate_key(algorithm: Algorithm, bits: int = 2048) -> PrivateKey:
    """A new private key; ``bits`` only for RSA (at least 1024)."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if bits < MIN_RSA_BITS:
        raise ValueError(f"an RSA key of {bits} bits is too small (RFC 8301: at least {MIN_RSA_BITS})")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file itself is 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_from_pem(data: bytes) -> PrivateKey:
    """Load a PEM private key (PKCS#8 or PKCS#1 for RSA). ValueError when it is neither kind we sign with."""
    key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits: too small (RFC 8301)")
        return key
    raise ValueError(f"not an RSA or Ed25519 key ({type(key).__name__})")


def algorithm_of(key: PrivateKey) -> Algorithm:
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"


def _public_octets(key: PrivateKey) -> bytes:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_record(key: PrivateKey) -> str:
    """The TXT record's text: ``v=DKIM1; k=ed25519; p=…``."""
    p = base64.b64encode(_public_octets(key)).decode("ascii")
    return f"v=DKIM1; k={algorithm_of(key)}; p={p}"


def record_name(selector: str, domain: str) -> str:
    """``SELECTOR._domainkey.DOMAIN`` (RFC 6376 §3.6.2.1), without the final dot."""
    return f"{selector}._domainkey.{domain}"


def zone_line(selector: str, domain: str, key: PrivateKey) -> str:
    """The zone-file line to publish, the text cut into strings of at most 255 octets (RFC 1035
    §3.3.14: one character-string holds 255 octets; an RSA 2048 record needs two)."""
    text = public_record(key)
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{record_name(selector, domain)}. IN TXT {quoted}"


def parse_tags(text: str) -> dict[str, str]:
    """RFC 6376 §3.2 tag=value list; whitespace around tags and values is dropped. ValueError for a
    malformed list or a duplicate tag."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"malformed tag {part.strip()!r}")
        if name in tags:
            raise ValueError(f"duplicate tag {name}")
        tags[name] = "".join(value.split())
    return tags


def record_problem(key: PrivateKey, text: str) -> str | None:
    """None when the published ``text`` is the record of ``key`` and lets it sign mail; otherwise the
    reason, for the log and ``postier dkim list``."""
    try:
        tags = parse_tags(text)
    except ValueError as exc:
        return f"unreadable record: {exc}"
    if tags.get("v", "DKIM1") != "DKIM1":
        return f"v={tags['v']}, not DKIM1"
    algorithm = algorithm_of(key)
    if tags.get("k", "rsa") != algorithm:
        return f"k={tags.get('k', 'rsa')} but the key is {algorithm}"
    if "h" in tags and "sha256" not in tags["h"].split(":"):
        return f"h={tags['h']} does not allow sha256"
    if "s" in tags and not {"email", "*"} & set(tags["s"].split(":")):
        return f"s={tags['s']} does not allow email"
    if not tags.get("p"):
        return "p= is empty: the key is revoked"
    try:
        published = base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError):
        return "p= is not base64"
    if published == _public_octets(key) or _same_rsa(key, published):
        return None
    return "p= is another key"


def _same_rsa(key: PrivateKey, published: bytes) -> bool:
    """An RSA record may carry the bare PKCS#1 RSAPublicKey instead of the SubjectPublicKeyInfo."""
    if not isinstance(key, rsa.RSAPrivateKey):
        return False
    pkcs1 = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return published == pkcs1
