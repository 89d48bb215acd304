"""What to publish so that others deliver to us securely (docs/tls.md, "Records to publish").

``records_for(domain, mx, cert_pem, mode)`` gives, for one of our domains whose MX is ``mx``: the
``_mta-sts`` TXT record (its ``id`` a digest of the policy, so it changes exactly when the policy
does), the policy file to serve at ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``, a DANE-EE
``3 1 1`` TLSA record for ``_25._tcp.MX`` from our certificate's public key (for a signed zone), and
a TLS-RPT record asking for reports at ``tlsrpt@DOMAIN``. Pure: the caller reads the certificate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postier.delivery.security.dane import tlsa_name
from postier.delivery.security.mtasts import StsMode, StsPolicy, policy_url, record_name

__all__ = ["Published", "records_for"]


@dataclass(frozen=True, slots=True)
class Published:
    domain: str
    records: tuple[str, ...]  # zone-file lines
    policy_url: str
    policy: str


def records_for(
    domain: str, mx: str, cert_pem: bytes | None, mode: StsMode = StsMode.TESTING, max_age_s: int = 604_800
) -> Published:
    policy = StsPolicy(mode, max_age_s, (mx.lower().rstrip("."),)).to_text()
    sts_id = hashlib.sha256(policy.encode()).hexdigest()[:20]
    host, path = policy_url(domain)
    records = [
        f'{record_name(domain)}.  TXT  "v=STSv1; id={sts_id}"',
        f"{host}.  A/AAAA  (the HTTPS server that serves {path})",
        f'_smtp._tls.{domain}.  TXT  "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"',
    ]
    if cert_pem:
        cert = x509.load_pem_x509_certificate(cert_pem)
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        records.append(
            f"{tlsa_name(mx)}.  TLSA  3 1 1 {hashlib.sha256(spki).hexdigest()}  (signed zone only)"
        )
    return Published(domain, tuple(records), f"https://{host}{path}", policy)
