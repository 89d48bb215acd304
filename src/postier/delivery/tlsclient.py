"""Client TLS for outbound delivery: one ``SSLContext`` per policy, and how a session is described.

Theory of operation. ``TlsPolicy`` (``delivery.tls``) picks the context:

- NONE: no context; STARTTLS is never sent.
- OPPORTUNISTIC and REQUIRED: encryption without authentication (RFC 7435 §1.1, "opportunistic
  security"): the certificate is not checked, since MX certificates that no public CA signed, or that
  name another host, are common and refusing them would only push the session back to plain text.
- VERIFY: the chain must lead to a trusted root (``ca_file``, else the system store) and the
  certificate must name the hop's host (RFC 6125 §6; an IP literal hop must match an IP SAN).

Every context sends SNI when the hop is a DNS name (RFC 6066 §3), offers TLS 1.2 and later only
(RFC 8996), and keeps the ``ssl`` module's default cipher list.
"""

from __future__ import annotations

import ipaddress
import ssl

from postier.delivery.transport import TlsPolicy

__all__ = ["TlsContexts", "describe_tls", "is_ip_literal", "strip_ip_literal"]


def strip_ip_literal(host: str) -> str:
    """``[192.0.2.1]`` → ``192.0.2.1``, ``[IPv6:2001:db8::1]`` → ``2001:db8::1`` (RFC 5321 §4.1.3)."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if host[:5].lower() == "ipv6:":
            host = host[5:]
    return host


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(strip_ip_literal(host))
    except ValueError:
        return False
    return True


class TlsContexts:
    """The client contexts, made once (building one reads the trust store)."""

    def __init__(self, ca_file: str = "") -> None:
        self._ca_file = ca_file
        self._contexts: dict[TlsPolicy, ssl.SSLContext] = {}

    def context(self, policy: TlsPolicy) -> ssl.SSLContext | None:
        """The context for ``policy``; None for NONE."""
        if policy is TlsPolicy.NONE:
            return None
        context = self._contexts.get(policy)
        if context is None:
            context = self._contexts[policy] = self._make(policy)
        return context

    def _make(self, policy: TlsPolicy) -> ssl.SSLContext:
        if policy is TlsPolicy.VERIFY:
            context = ssl.create_default_context(cafile=self._ca_file or None)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    @staticmethod
    def server_hostname(host: str, policy: TlsPolicy) -> str | None:
        """What to pass as ``server_hostname``: the name (SNI, and the name verified under VERIFY);
        an IP literal only under VERIFY (it is then matched against IP SANs; no SNI is sent)."""
        if is_ip_literal(host):
            return strip_ip_literal(host) if policy is TlsPolicy.VERIFY else None
        return host.rstrip(".")


def describe_tls(ssl_object: object) -> str | None:
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384"`` for a connection's ``ssl_object``; None without TLS."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    version = ssl_object.version() or "TLS"
    cipher = ssl_object.cipher()
    return f"{version} {cipher[0]}" if cipher else version
