"""REQUIRETLS (RFC 8689) on the sending side, and the ``TLS-Required: No`` header field (§5).

Theory of operation. A message received with ``MAIL FROM:<…> REQUIRETLS`` (``Envelope.requiretls``)
is only ever handed to a next hop that is *authenticated* and *offers REQUIRETLS itself* (§4.2.1),
and REQUIRETLS is passed on in its MAIL command:

- before any connection, ``refusal_before_connecting``: an MX destination must have its hosts
  authenticated by DANE (a hop with TLSA records) or by an MTA-STS ``enforce`` policy; a relay
  (``[[route]]``, smarthost) must be configured ``tls = "verify"`` (its name comes from our
  configuration, not from the DNS); an LMTP server is final delivery. Else every recipient fails
  ``550 5.7.30`` and is bounced: there is no other route a later attempt could take;
- per connection, ``refusal_on_connection``: the session must have been authenticated (DANE, or a
  verified certificate under MTA-STS or a verifying relay: ``SmtpConnection.verified_by``) and the
  server must offer REQUIRETLS; else this host is a site failure ``550 5.7.30`` (the next MX may do),
  and nothing is sent to it.

``TLS-Required: No`` in the header (and no REQUIRETLS: REQUIRETLS wins, §4.1) asks that recipient-side
policies be ignored (§5): ``relaxed`` drops DANE and MTA-STS requirements of the destination and
delivers opportunistically (``tls_policy=opportunistic source=header:TLS-Required``).
"""

from __future__ import annotations

import dataclasses
import re

from postier.delivery.connection import SmtpConnection
from postier.delivery.transport import Destination, DestinationKind, Hop, OutboundMessage, TlsPolicy
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.message import header_section

__all__ = ["is_relaxed", "refusal_before_connecting", "refusal_on_connection", "relaxed"]

_FAILED = EnhancedStatus(5, 7, 30)
_TLS_REQUIRED_NO = re.compile(rb"(?im)^TLS-Required[ \t]*:[ \t]*No[ \t]*\r?$")


def is_relaxed(message: OutboundMessage) -> bool:
    """``TLS-Required: No`` applies: in the header, and the message does not require TLS."""
    return (
        not message.envelope.requiretls and _TLS_REQUIRED_NO.search(header_section(message.body)) is not None
    )


def relaxed(destination: Destination) -> Destination:
    """``destination`` without its DANE and MTA-STS requirements (RFC 8689 §5)."""
    if destination.kind is not DestinationKind.MX:
        return destination
    hops = tuple(Hop(h.host, h.port, h.unix_path) for h in destination.hosts)
    tls = TlsPolicy.OPPORTUNISTIC if destination.tls_label in ("mta-sts", "dane") else destination.tls
    return dataclasses.replace(
        destination,
        key=destination.key.split("/")[0] + "/relaxed",
        hosts=hops,
        tls=tls,
        tls_label=tls.value,
        tls_source="header:TLS-Required",
        refusal=None,
    )


def refusal_before_connecting(destination: Destination) -> Reply | None:
    if destination.kind is DestinationKind.LMTP:
        return None
    if destination.kind is DestinationKind.RELAY:
        if destination.tls is TlsPolicy.VERIFY:
            return None
        return Reply(550, _FAILED, "REQUIRETLS: the relay is not configured with tls = verify")
    if destination.tls_label == "mta-sts" or any(h.tlsa for h in destination.hosts):
        return None
    return Reply(
        550,
        _FAILED,
        f"REQUIRETLS: neither DANE nor an MTA-STS enforce policy authenticates the MX hosts of "
        f"{destination.domain}",
    )


def refusal_on_connection(connection: SmtpConnection) -> Reply | None:
    if connection.verified_by is None:
        return Reply(550, _FAILED, "REQUIRETLS: the server was not authenticated (DANE or MTA-STS)")
    extensions = connection.engine.extensions
    if extensions is None or not extensions.has("REQUIRETLS"):
        return Reply(550, _FAILED, "REQUIRETLS: the server does not offer REQUIRETLS")
    return None
