"""DKIM signing (RFC 6376, RFC 8463): canonicalisation, the signer, keys on disk and in DNS.

``canon`` (relaxed canonicalisation) → ``signer`` (``DkimSigner``, immutable, swapped whole) ←
``table`` (which keys sign, from their DNS records) ← ``keystore`` (files under data_dir/dkim) and
``keys`` (generation, records); ``service`` keeps the signer current; ``choose`` picks the domain.
"""

from postier.mailauth.dkim.choose import from_domain, host_domain, signing_domain
from postier.mailauth.dkim.service import DkimKeys, key_root, statuses
from postier.mailauth.dkim.signer import DkimSigner, SigningKey, sign_message

__all__ = [
    "DkimKeys",
    "DkimSigner",
    "SigningKey",
    "from_domain",
    "host_domain",
    "key_root",
    "sign_message",
    "signing_domain",
    "statuses",
]
