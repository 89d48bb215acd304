"""The SMTP/LMTP courier: carries one message to one destination (``transport.Courier``).

Theory of operation. ``deliver`` first takes an idle connection to the destination from the pool,
if there is one. Then, while some recipient has no final reply, it walks the destination's hosts in
order, every address of each (A then AAAA, from the injected ``Resolver``; IP literals and unix
sockets need no lookup), and on each sets up a session and sends one transaction for the recipients
still pending. ``attempts`` says which replies are final and which move on to the next address
(site failures); when every host failed, each recipient gets its most telling site failure.

Setting up a session, in order (RFC 5321 §3.1, RFC 3207, RFC 4954):

1. connect within ``connect_timeout_s`` (implicit TLS from the first byte with
   ``destination.implicit_tls``, RFC 8314), and read the greeting. A greeting other than 220 moves on
   (a 5xx greeting too: as Postfix's ``smtp_skip_5xx_greeting``, the next MX may take the mail; the
   reply is softened to 4xx so that only a host that was asked can refuse mail for good);
2. EHLO (LHLO for LMTP; the engine falls back to HELO);
3. TLS (``tlsclient``): NONE never; OPPORTUNISTIC when offered — if the handshake fails, the
   courier logs it and reconnects to the same address in plain text (as Postfix does at level "may"),
   and a refused STARTTLS continues in plain text; REQUIRED and VERIFY defer with ``4.7.4`` when
   STARTTLS is not offered and with ``4.7.5`` when the handshake or the certificate check fails.
   LMTP never uses TLS. After TLS, EHLO again (RFC 3207 §4.2). Per host (``Hop``, from
   ``security.plan``): DANE hosts need STARTTLS and a TLSA match (``tlscheck``); MTA-STS ``testing``
   tries VERIFY first and, when it fails, notes why (``tls_failure``) and goes on as configured;
4. AUTH with ``destination.credentials``, only over TLS unless the policy is NONE (else ``4.7.10``,
   "encryption needed", RFC 4954 §6). A refused AUTH (535) defers with ``4.7.8`` instead of bouncing:
   wrong credentials are our configuration's fault (Postfix: ``smtp_sasl_auth_soft_bounce``).

Two caps bound one attempt (Postfix's ``smtp_mx_address_limit`` / ``smtp_mx_session_limit``): at most
``max_addresses`` addresses tried over all hosts and ``max_sessions`` set-up sessions carrying the
message (a pooled session counts for neither), so 20 MX hosts of 10 addresses each cost at most 5
connect timeouts; when a cap stops the walk, pending recipients get their most telling site failure.

Accepted recipients get ``dsn_relayed`` when the peer does not offer DSN (RFC 3461 §4.1), except
under LMTP, which is final delivery. ``remote_mta`` is "host [ip]:port" whenever a server was talked
to; ``tls`` describes the session's TLS. After a clean transaction the connection goes back to the
pool (``pool``); after a site failure it is QUIT.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from postier.delivery.attempts import AttemptBook, classify
from postier.delivery.connection import Endpoint, SmtpConnection
from postier.delivery.ownaddresses import OwnAddresses
from postier.delivery.pool import ConnectionPool
from postier.delivery.requiretls import is_relaxed, refusal_before_connecting, refusal_on_connection, relaxed
from postier.delivery.tlscheck import dane_verdict, hop_policy, label_attempts, mark_verified, testing_failed
from postier.delivery.tlsclient import TlsContexts, is_ip_literal, strip_ip_literal
from postier.delivery.transport import Attempt, Destination, DestinationKind, Hop, OutboundMessage, TlsPolicy
from postier.dns import Clock, DnsError, NoData, NxDomain, Resolver
from postier.mail.envelope import Recipient
from postier.mail.reply import EnhancedStatus, Reply
from postier.observe import fields, get_logger
from postier.smtp.client.connection import ClientConnection
from postier.smtp.client.events import ClientTimeouts

__all__ = ["SmtpCourier"]

_log = get_logger("postier.delivery.courier")
_CRYPTO_FAILURE = EnhancedStatus(4, 7, 5)


def _reply(code: int, status: str, text: str) -> Reply:
    return Reply(code, EnhancedStatus.parse(status), text)


def _deferred(reply: Reply, status: tuple[int, int], why: str, code: int = 451) -> Reply:
    """A 4xx carrying a server's refusal (kept in the text) for a site failure."""
    subject, detail = (reply.status.subject, reply.status.detail) if reply.status else status
    code = reply.code if 400 <= reply.code < 500 else code
    return Reply(code, EnhancedStatus(4, subject, detail), f"{why}: {reply.code} {reply.text}".rstrip())


class SmtpCourier:
    """Delivers by SMTP or LMTP; see the module docstring. Implements ``transport.Courier``."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        helo_name: str,
        connect_timeout_s: float = 30.0,
        ca_file: str = "",
        reuse_idle_s: float = 5.0,
        reuse_max_messages: int = 100,
        timeouts: ClientTimeouts | None = None,
        clock: Clock = time.monotonic,
        own: OwnAddresses | None = None,
        max_addresses: int = 5,
        max_sessions: int = 2,
    ) -> None:
        if max_addresses < 1 or max_sessions < 1:
            raise ValueError("max_addresses and max_sessions must be at least 1")
        self.max_addresses, self.max_sessions = max_addresses, max_sessions
        self._resolver = resolver
        self._own = own or OwnAddresses()
        self._helo_name = helo_name
        self._connect_timeout_s = connect_timeout_s
        self._timeouts = timeouts or ClientTimeouts()
        self._tls = TlsContexts(ca_file)
        if ca_file:  # a CA file that does not load fails here (a start, a reload), not at each delivery
            self._tls.context(TlsPolicy.VERIFY)
        self.pool = ConnectionPool(idle_s=reuse_idle_s, max_messages=reuse_max_messages, clock=clock)

    async def deliver(
        self, destination: Destination, message: OutboundMessage, recipients: Sequence[Recipient]
    ) -> list[Attempt]:
        book = AttemptBook(recipients)
        if not recipients:
            return []
        if is_relaxed(message):  # TLS-Required: No (RFC 8689 §5)
            destination = relaxed(destination)
        refusal = destination.refusal  # e.g. an MTA-STS policy naming none of the MX hosts
        if refusal is None and message.envelope.requiretls:
            refusal = refusal_before_connecting(destination)
        if refusal is not None:
            return label_attempts(destination, [Attempt(r, refusal) for r in recipients])
        reused = self.pool.take(destination.key)
        if reused is not None:
            await self._transact(reused, destination, message, book)
        await self._walk(destination, message, book)
        return label_attempts(destination, book.attempts())

    async def _walk(self, destination: Destination, message: OutboundMessage, book: AttemptBook) -> None:
        """Every address of every host in order, until the recipients are done or a cap is reached."""
        addresses = sessions = 0

        def capped() -> bool:
            if addresses < self.max_addresses and sessions < self.max_sessions:
                return False
            _log.info(
                "address or session limit reached; the other hosts are not tried",
                extra=fields(domain=destination.key, addresses=addresses, sessions=sessions),
            )
            return True

        for hop in destination.hosts:
            if book.is_done or capped():
                return
            if hop.refusal is not None:  # DANE: a host that cannot be authenticated is never used
                if not book.is_done:
                    book.site_failure(
                        Attempt(book.recipients[0], hop.refusal.with_text(f"{hop.refusal.text} ({hop.host})"))
                    )
                continue
            endpoints = await self._endpoints(destination, hop, book)
            if endpoints is None:
                return  # RFC 5321 §5.1: this host is us; the hosts after it are not tried either
            for endpoint in endpoints:
                if book.is_done or capped():
                    return
                addresses += 1
                connection = await self._establish(destination, hop, endpoint, book)
                if connection is not None:
                    sessions += 1
                    await self._transact(connection, destination, message, book)

    async def close(self) -> None:
        await self.pool.close()

    # --- hosts and addresses -----------------------------------------------------------------------

    async def _endpoints(
        self, destination: Destination, hop: Hop, book: AttemptBook
    ) -> list[Endpoint] | None:
        """The addresses to try for ``hop`` ([] after a lookup failure, recorded in ``book``);
        None when one of them is this server itself (recorded as a loop)."""
        if book.is_done:
            return []
        if hop.unix_path is not None:
            return [Endpoint(hop.host, None, hop.port, hop.unix_path)]
        addresses = await self._addresses(destination, hop, book)
        host = strip_ip_literal(hop.host) if is_ip_literal(hop.host) else hop.host
        for address in addresses:
            if self._own.is_ours(address, hop.port):
                self._loop(destination, Endpoint(host, address, hop.port), book)
                return None
        return [Endpoint(host, address, hop.port) for address in addresses]

    def _loop(self, destination: Destination, endpoint: Endpoint, book: AttemptBook) -> None:
        """RFC 3463 X.4.6 routing loop: an MX that is us fails (as Postfix's "loops back to
        myself"); a relay or LMTP server that is us is our configuration's mistake: defer."""
        code, status = (554, "5.4.6") if destination.kind is DestinationKind.MX else (451, "4.4.6")
        text = f"Mail for {destination.domain} loops back to this server ({endpoint})"
        _log.warning("mail loops back to this server", extra=fields(host=str(endpoint)))
        book.site_failure(Attempt(book.recipients[0], _reply(code, status, text)))

    async def _addresses(self, destination: Destination, hop: Hop, book: AttemptBook) -> list[str]:
        if is_ip_literal(hop.host):
            return [strip_ip_literal(hop.host)]
        try:
            addresses = await self._resolver.addresses(hop.host)
        except (NxDomain, NoData):
            # RFC 3463 X.4.4 unable to route. An MX host that does not exist bounces (as in Postfix)
            # unless another host answers; a configured relay or LMTP host is our mistake: defer.
            code, status = (550, "5.4.4") if destination.kind is DestinationKind.MX else (451, "4.4.4")
            book.site_failure(
                Attempt(book.recipients[0], _reply(code, status, f"Host not found: {hop.host}"))
            )
            return []
        except DnsError:  # TemporaryDnsError, and any other lookup failure: try again later
            book.site_failure(
                Attempt(book.recipients[0], _reply(451, "4.4.3", f"Temporary DNS failure for {hop.host}"))
            )
            return []
        return addresses

    # --- one session -------------------------------------------------------------------------------

    async def _establish(
        self,
        destination: Destination,
        hop: Hop,
        endpoint: Endpoint,
        book: AttemptBook,
        *,
        plain: bool = False,
        testing_failure: str | None = None,
    ) -> SmtpConnection | None:
        """Connect, greet, EHLO, TLS, AUTH. None when the host cannot be used (recorded in ``book``).
        MTA-STS testing: STARTTLS is tried as enforce would (VERIFY); when that fails, the failure is
        kept (``tls_failure``) and the host is used as configured — again, unverified, after a failed
        certificate check (``testing_failure``)."""
        policy = hop_policy(destination, hop)
        soft = destination.tls_label == "mta-sts-testing" and not hop.tlsa and not plain
        soft = soft and testing_failure is None and policy is not TlsPolicy.NONE
        engine = ClientConnection(
            local_hostname=self._helo_name,
            lmtp=destination.kind is DestinationKind.LMTP,
            timeouts=self._timeouts,
        )
        implicit = destination.implicit_tls and endpoint.unix_path is None
        context = self._tls.context(policy if policy is not TlsPolicy.NONE else TlsPolicy.OPPORTUNISTIC)
        opened = await SmtpConnection.open(
            endpoint,
            engine,
            connect_timeout_s=self._connect_timeout_s,
            tls=context if implicit else None,
            server_hostname=TlsContexts.server_hostname(endpoint.host, policy),
        )
        if isinstance(opened, Reply):
            reply = opened.with_text(f"{opened.text} ({endpoint})")
            _log.info("connect failed", extra=fields(host=str(endpoint), reply=str(reply)))
            book.site_failure(Attempt(book.recipients[0], reply))
            return None
        connection = opened
        try:
            retry, reply = await self._set_up(
                connection, destination, hop, policy, starttls=not (implicit or plain), soft=soft
            )
        except BaseException:  # cancelled: never leave the socket open
            connection.close()
            raise
        if retry and soft and connection.tls_failure is not None:  # testing: again, as configured
            failure = connection.tls_failure
            return await self._establish(destination, hop, endpoint, book, testing_failure=failure)
        if retry:
            return await self._establish(destination, hop, endpoint, book, plain=True)
        connection.tls_failure = connection.tls_failure or testing_failure
        if reply.code >= 500:  # a site failure: only a host asked for the message may refuse it for good
            reply = _deferred(reply, (4, 0), "Refused by the remote server")
        if reply.code >= 400:
            self._site_failure(book, connection, reply)
            await connection.quit()
            return None
        return connection

    async def _set_up(
        self,
        connection: SmtpConnection,
        destination: Destination,
        hop: Hop,
        policy: TlsPolicy,
        *,
        starttls: bool,
        soft: bool = False,
    ) -> tuple[bool, Reply]:
        """Greeting, EHLO, STARTTLS, AUTH: (connect again, the reply that ends the set-up)."""
        reply = await connection.greet()
        if reply.code != 220:
            return False, reply
        reply = await connection.hello()
        if reply.code == 250 and starttls and policy is not TlsPolicy.NONE:
            retry, reply = await self._starttls(
                connection, connection.endpoint, TlsPolicy.VERIFY if soft else policy
            )
            if soft and reply.code >= 400:  # enforce would refuse this host: note why, go on as configured
                retry, reply = testing_failed(connection, reply, policy)
            if retry:
                return True, reply
            if reply.code < 400 and hop.tlsa:
                reply = dane_verdict(connection, hop)
            elif reply.code < 400:
                mark_verified(connection, destination, policy)
        if reply.code < 400 and destination.credentials is not None:
            reply = await self._authenticate(connection, destination, policy)
        return False, reply

    async def _starttls(
        self, connection: SmtpConnection, endpoint: Endpoint, policy: TlsPolicy
    ) -> tuple[bool, Reply]:
        """(retry in plain text, reply): a reply ≥ 400 means this host cannot be used."""
        extensions = connection.engine.extensions
        if extensions is None or not extensions.has("STARTTLS"):
            if policy is TlsPolicy.OPPORTUNISTIC:
                return False, _reply(250, "2.0.0", "TLS not offered")
            return False, _reply(
                451, "4.7.4", "TLS is required, but the remote server does not offer STARTTLS"
            )
        context = self._tls.context(policy)
        assert context is not None
        reply = await connection.starttls(context, TlsContexts.server_hostname(endpoint.host, policy))
        if reply.code == 220:
            return False, await connection.hello()
        handshake_failed = reply.status == _CRYPTO_FAILURE and connection.failure is not None
        if policy is TlsPolicy.OPPORTUNISTIC and handshake_failed:
            _log.warning(
                "TLS handshake failed; retrying the same host without TLS (policy opportunistic)",
                extra=fields(host=str(endpoint), reply=str(reply)),
            )
            return True, reply
        if policy is TlsPolicy.OPPORTUNISTIC and connection.is_usable:  # RFC 3207 §4: go on in plain text
            return False, _reply(250, "2.0.0", "STARTTLS refused; going on in plain text")
        return False, reply

    async def _authenticate(
        self, connection: SmtpConnection, destination: Destination, policy: TlsPolicy
    ) -> Reply:
        credentials = destination.credentials
        assert credentials is not None
        if connection.tls is None and policy is not TlsPolicy.NONE:
            return _reply(451, "4.7.10", "Credentials are only sent over TLS, and TLS is not in use")
        reply = await connection.authenticate(credentials)
        if reply.code == 235:
            return reply
        _log.warning(
            "authentication failed",
            extra=fields(host=str(connection.endpoint), user=credentials.username, reply=str(reply)),
        )
        if reply.code >= 500:
            return _deferred(reply, (7, 8), "Authentication failed", 454)  # RFC 4954 §6: 454 temporary
        return reply

    def _site_failure(self, book: AttemptBook, connection: SmtpConnection, reply: Reply) -> None:
        attempt = Attempt(
            book.recipients[0], connection.explain(reply), str(connection.endpoint), connection.tls
        )
        book.site_failure(attempt)

    # --- one transaction ---------------------------------------------------------------------------

    async def _transact(
        self,
        connection: SmtpConnection,
        destination: Destination,
        message: OutboundMessage,
        book: AttemptBook,
    ) -> None:
        indexes = book.pending
        refusal = refusal_on_connection(connection) if message.envelope.requiretls else None
        if refusal is not None:  # RFC 8689 §4.2.1: this host will not do; the next one may
            book.site_failure(Attempt(book.recipients[0], refusal, str(connection.endpoint), connection.tls))
            await connection.quit()
            return
        try:
            result = await connection.send(message, [book.recipients[i] for i in indexes])
        except BaseException:  # cancelled: never leave the socket open
            connection.close()
            raise
        lmtp = destination.kind is DestinationKind.LMTP
        extensions = connection.engine.extensions
        has_dsn = extensions is not None and extensions.has("DSN")
        remote, tls = str(connection.endpoint), connection.tls
        any_site = False
        for i, (reply, is_site) in zip(indexes, classify(result, lmtp=lmtp), strict=True):
            reply = connection.explain(reply)
            relayed = reply.code < 300 and not has_dsn and not lmtp
            attempt = Attempt(
                book.recipients[i], reply, remote, tls, relayed, tls_failure=connection.tls_failure
            )
            if is_site:
                any_site = True
                book.site_failure(attempt, [i])
            else:
                book.final(i, attempt)
        if any_site or not connection.is_usable:
            await connection.quit()
        else:
            self.pool.give(destination.key, connection)
