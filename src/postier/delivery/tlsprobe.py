"""``postier explain tls --probe``: one look at an MX host's TLS, as a delivery would see it.

Theory of operation. ``probe`` connects to one address of the host on port 25, reads the greeting,
sends EHLO and, when offered, STARTTLS with the context the host's policy needs — VERIFY for
MTA-STS enforce and a configured ``verify``, no PKIX check otherwise — then, for a DANE host, matches
the chain against its TLSA records (``tlscheck.dane_verdict``). It sends no mail (QUIT after TLS) and
never raises: the answer is one line saying what a delivery would meet.
"""

from __future__ import annotations

from postier.delivery.connection import Endpoint, SmtpConnection
from postier.delivery.tlscheck import dane_verdict
from postier.delivery.tlsclient import TlsContexts
from postier.delivery.transport import Hop, TlsPolicy
from postier.mail.reply import Reply
from postier.smtp.client import ClientConnection
from postier.smtp.client.events import ClientTimeouts

__all__ = ["probe"]


async def probe(
    hop: Hop,
    address: str,
    *,
    verify: bool,
    ca_file: str = "",
    helo: str = "localhost",
    timeout_s: float = 15.0,
) -> str:
    engine = ClientConnection(local_hostname=helo, timeouts=ClientTimeouts(*([timeout_s] * 7)))
    opened = await SmtpConnection.open(
        Endpoint(hop.host, address, hop.port), engine, connect_timeout_s=timeout_s
    )
    if isinstance(opened, Reply):
        return f"cannot connect to {address}: {opened}"
    connection = opened
    try:
        return await _look(connection, hop, verify=verify, ca_file=ca_file)
    finally:
        await connection.quit()


async def _look(connection: SmtpConnection, hop: Hop, *, verify: bool, ca_file: str) -> str:
    reply = await connection.greet()
    if reply.code != 220:
        return f"greeting refused: {reply}"
    reply = await connection.hello()
    if reply.code != 250:
        return f"EHLO refused: {reply}"
    extensions = connection.engine.extensions
    if extensions is None or not extensions.has("STARTTLS"):
        return "STARTTLS not offered: a delivery needing TLS is deferred (4.7.4)"
    policy = TlsPolicy.VERIFY if verify and not hop.tlsa else TlsPolicy.REQUIRED
    context = TlsContexts(ca_file).context(policy)
    assert context is not None
    reply = await connection.starttls(context, TlsContexts.server_hostname(hop.host, policy))
    if reply.code != 220:
        return f"STARTTLS failed: {reply}"
    reply = await connection.hello()  # RFC 3207 §4.2: the extensions again, under TLS
    offers = "offers REQUIRETLS" if _has(connection, "REQUIRETLS") else "does not offer REQUIRETLS"
    if hop.tlsa:
        verdict = dane_verdict(connection, hop)
        if verdict.code != 250:
            return f"{connection.tls}; {verdict.text}: a delivery is deferred (4.7.5)"
        return f"{connection.tls}; the certificate matches a TLSA record; {offers}"
    if policy is TlsPolicy.VERIFY:
        return f"{connection.tls}; the certificate is valid for {hop.host}; {offers}"
    return f"{connection.tls} (certificate not checked); {offers}"


def _has(connection: SmtpConnection, keyword: str) -> bool:
    extensions = connection.engine.extensions
    return extensions is not None and extensions.has(keyword)
