"""Our TLS certificate (``[tls] cert``): valid now, not expiring within 21 days, naming the server's
host name, and chaining to a trusted root — what a sender that verifies (MTA-STS enforce, DANE-less
``verify``) will check."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509 import verification

from postier.doctor.findings import Finding, fail, ok, warn

__all__ = ["EXPIRY_WARNING", "judge_certificate", "read_roots", "san_names"]

EXPIRY_WARNING = timedelta(days=21)


def read_roots(ca_file: str) -> bytes:
    """The trusted roots: ``[delivery] ca_file`` (what our own courier trusts) or the system bundle."""
    path = ca_file or ssl.get_default_verify_paths().cafile or ""
    try:
        return Path(path).read_bytes() if path else b""
    except OSError:
        return b""


def san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


def _names(host: str, names: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    rest = host.partition(".")[2]
    return host in names or (bool(rest) and f"*.{rest}" in names)


def _chain(certs: Sequence[x509.Certificate], roots: bytes, host: str, now: datetime) -> str | None:
    """None when the chain verifies for ``host`` at ``now``; else why."""
    try:
        store = verification.Store(x509.load_pem_x509_certificates(roots))
    except ValueError:
        return "no trusted roots to check the chain against"
    # Criticality of subjectAltName and extendedKeyUsage is not held against the certificate: the
    # OpenSSL that senders verify with does not check it (and test CAs such as trustme mark both).
    agnostic = verification.Criticality.AGNOSTIC
    ee_policy = (
        verification.ExtensionPolicy.webpki_defaults_ee()
        .require_present(x509.SubjectAlternativeName, agnostic, None)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
    )
    builder = verification.PolicyBuilder().store(store).time(now)
    builder = builder.extension_policies(
        ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
    )
    verifier = builder.build_server_verifier(x509.DNSName(host))
    try:
        verifier.verify(certs[0], list(certs[1:]))
    except verification.VerificationError as exc:
        return str(exc)
    return None


def judge_certificate(
    path: str, pem: bytes | None, hostname: str, roots: bytes, now: datetime
) -> list[Finding]:
    """``path``: ``[tls] cert`` (empty: not set); ``pem``: that file (leaf first, then its chain),
    None when it is not set or cannot be read."""
    subject = path or "[tls] cert"
    if pem is None and path:
        return [fail("certificate", subject, f"cannot read {path}")]
    if pem is None:
        fix = '[tls] cert = "/etc/letsencrypt/live/HOST/fullchain.pem" and key = ".../privkey.pem"'
        return [warn("certificate", subject, "not set: a self-signed certificate is used", fix)]
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        return [fail("certificate", subject, f"not a PEM certificate: {exc}")]
    leaf = certs[0]
    renew = f"renew the certificate for {hostname}"
    after, before = leaf.not_valid_after_utc, leaf.not_valid_before_utc
    if after <= now:
        return [fail("certificate", subject, f"expired on {after:%Y-%m-%d %H:%M} UTC", renew)]
    if before > now:
        return [fail("certificate", subject, f"not valid before {before:%Y-%m-%d %H:%M} UTC", renew)]
    out: list[Finding] = []
    left = after - now
    if left < EXPIRY_WARNING:
        out.append(warn("certificate", subject, f"expires in {left.days} days ({after:%Y-%m-%d})", renew))
    names = san_names(leaf)
    if not _names(hostname, names):
        reason = f"does not name {hostname} (it names {', '.join(names) or 'nothing'})"
        return [*out, fail("certificate", subject, reason, f"a certificate whose names include {hostname}")]
    problem = _chain(certs, roots, hostname, now)
    if problem is not None:
        reason = f"the chain does not verify: {problem}"
        out.append(
            fail("certificate", subject, reason, "serve the full chain (fullchain.pem) from a public CA")
        )
    elif left >= EXPIRY_WARNING:
        out.append(ok("certificate", subject, f"valid for {hostname} until {after:%Y-%m-%d}; chain verifies"))
    return out
