"""Keys and DNS records for DKIM and ARC tests: RSA (any size: sizes under 1024 bits come from the
openssl command, which still makes them) and Ed25519, as dkimpy wants them."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class SigningKey:
    private: bytes
    """What dkimpy's sign() takes: PEM for RSA, base64 of the raw key for Ed25519."""
    record: str
    """The TXT record of the public key."""


def rsa_key(bits: int = 2048) -> SigningKey:
    if bits < 1024:
        pem = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True, check=True).stdout
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, rsa.RSAPrivateKey)
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKey(private, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode())


def ed25519_key() -> SigningKey:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKey(base64.b64encode(raw), "v=DKIM1; k=ed25519; p=" + base64.b64encode(public).decode())
