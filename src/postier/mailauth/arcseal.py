"""ARC sealing (RFC 8617 §5.1): the ARC set a forwarder adds so that its own authentication results
travel with a message it sends on — ARC-Authentication-Results (a copy of our Authentication-Results
field, authserv-id ``server.hostname``), ARC-Message-Signature and ARC-Seal, instance i = the
previous chain's + 1, ``cv=`` taken from the ``arc=`` result in our Authentication-Results field.

Signed with an RSA key of the DKIM key store (RFC 8617 allows rsa-sha256 only) by dkimpy, which
never asks the DNS while sealing. A message without our Authentication-Results field, or a key that is
not RSA, is not sealed.
"""

from __future__ import annotations

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postier.mailauth.dkim import SigningKey

__all__ = ["arc_seal"]


class _Quiet:
    def error(self, msg: object, *args: object) -> None:
        pass

    debug = info = warning = error


def arc_seal(message: bytes, key: SigningKey, authserv_id: str) -> bytes:
    """The three ARC fields to prepend to ``message`` (CRLF line ends), or b"" when it cannot be sealed."""
    if not isinstance(key.key, rsa.RSAPrivateKey):
        return b""
    pem = key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    try:
        fields = dkim.arc_sign(
            message, key.selector.encode(), key.domain.encode(), pem, authserv_id.encode(), logger=_Quiet()
        )
    except dkim.DKIMException:
        return b""
    return b"".join(fields)
