"""What the courier checks of a host's TLS beyond ``tlsclient``: DANE, and the labels of each attempt.

Theory of operation. A hop with TLSA records (``security.plan``) is a DANE host (RFC 7672 §2.2): the
courier insists on STARTTLS (REQUIRED: no PKIX check, the handshake itself must succeed), then
``dane_verdict`` matches the chain the server sent against the records (``security.dane``); a
mismatch is a site failure ``4.7.5`` and nothing is sent. The chain comes from the ``ssl`` object's
``get_unverified_chain`` (present, unadvertised, in CPython's ``_ssl`` since 3.10; public in 3.13);
without it only the leaf is known, which is enough for DANE-EE.

``label_attempts`` writes the policy that applied and its source on every attempt, for the
``delivery`` log line: the hop's own (DANE) when the attempt's server was one, else the destination's.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime

from postier.delivery.connection import SmtpConnection
from postier.delivery.security.dane import check_chain
from postier.delivery.security.tlsrpt import result_type
from postier.delivery.transport import Attempt, Destination, DestinationKind, Hop, TlsPolicy
from postier.mail.reply import EnhancedStatus, Reply

__all__ = ["dane_verdict", "hop_policy", "label_attempts", "mark_verified", "peer_chain", "testing_failed"]

_ENCODING_DER = 2  # _ssl.ENCODING_DER


def hop_policy(destination: Destination, hop: Hop) -> TlsPolicy:
    """The TLS policy the courier applies to ``hop`` (DANE hosts: REQUIRED, then ``dane_verdict``)."""
    if destination.kind is DestinationKind.LMTP:
        return TlsPolicy.NONE
    if hop.tlsa:
        return TlsPolicy.REQUIRED
    return hop.tls or destination.tls


def peer_chain(ssl_object: object) -> list[bytes]:
    """The certificates the server sent, leaf first, DER."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return []
    getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        return [bytes(cert.public_bytes(_ENCODING_DER)) for cert in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def dane_verdict(connection: SmtpConnection, hop: Hop, now: datetime | None = None) -> Reply:
    """250 when the server's chain matches one of ``hop.tlsa``; else the ``4.7.5`` that refuses it."""
    chain = peer_chain(connection.ssl_object)
    problem = check_chain(hop.tlsa, chain, [hop.host], now or datetime.now(UTC))
    if problem is None:
        connection.verified_by = "dane"
        return Reply(250, EnhancedStatus(2, 0, 0), "DANE authenticated")
    return Reply(421, EnhancedStatus(4, 7, 5), f"DANE: {problem}")


def mark_verified(connection: SmtpConnection, destination: Destination, policy: TlsPolicy) -> None:
    """After STARTTLS under VERIFY: an MTA-STS host or a configured relay is now authenticated (an MX
    verified only by configuration is not: its name came from unauthenticated DNS)."""
    if connection.tls is None or policy is not TlsPolicy.VERIFY:
        return
    if destination.tls_label == "mta-sts":
        connection.verified_by = "mta-sts"
    elif destination.kind is DestinationKind.RELAY:
        connection.verified_by = "relay"


def testing_failed(connection: SmtpConnection, reply: Reply, policy: TlsPolicy) -> tuple[bool, Reply]:
    """MTA-STS testing: STARTTLS under VERIFY gave ``reply`` (≥ 400), which enforce would refuse. Keep
    the RFC 8460 result type on the connection; then (connect again, unverified — after a failed
    handshake or certificate), or what the configured ``policy`` makes of a missing STARTTLS."""
    connection.tls_failure = result_type("", str(reply)) or "validation-failure"
    if reply.status == EnhancedStatus(4, 7, 5) or not connection.is_usable:
        return True, reply
    if policy is TlsPolicy.OPPORTUNISTIC:
        return False, Reply(250, EnhancedStatus(2, 0, 0), "TLS not offered")
    return False, reply


def label_attempts(destination: Destination, attempts: Sequence[Attempt]) -> list[Attempt]:
    by_host = {h.host: h for h in destination.hosts if h.tls_label}
    labelled = []
    for attempt in attempts:
        host = by_host.get((attempt.remote_mta or "").split(" ")[0])
        label = host.tls_label if host is not None else destination.tls_label
        source = host.tls_source if host is not None else destination.tls_source
        labelled.append(dataclasses.replace(attempt, tls_policy=label or None, tls_source=source or None))
    return labelled
