"""The session's side of the policy pipeline: what it knows of the client, and each stage asked.

``SessionStages`` keeps, for one session, the ``Live`` state it obeys (taken at connect and again at
each MAIL FROM, kept to the end of the transaction), the client as the checks see it (a frozen
``Client``, replaced when HELO, TLS or AUTH change it) and the open ``Transaction``. Each stage method
asks the pipeline and returns the reply; a refusal is logged as one ``reject`` with the check that
made it, any other word of a check as one ``verdict``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.observe import mail_event
from postier.policy import Client, Decision, Policy, Stage, Transaction
from postier.server.auth_flow import SessionAuth
from postier.server.intake import client_info, queue_message
from postier.smtp.server.events import Hello, MailFrom, MessageReceived, RcptTo
from postier.spool import MessageBody

if TYPE_CHECKING:
    from postier.server.listener import Listener, Live, SmtpServer

__all__ = ["SessionStages"]


class SessionStages:
    def __init__(self, server: SmtpServer, sid: str, auth: SessionAuth) -> None:
        self.server = server
        self.sid = sid
        self.live: Live = server.live
        self.helo = ""
        self.esmtp = False
        self.tls: str | None = None
        self._auth = auth
        self._client: Client | None = None
        self._txn: Transaction | None = None
        self._mail_at = 0.0  # monotonic time of the MAIL FROM that began the transaction
        self._remote = ""

    @property
    def policy(self) -> Policy:
        return self.live.policy

    async def open(self, ip: str, port: int, listener: Listener) -> Reply | None:
        """The session began (logged; under TLS already for implicit TLS): the client as the checks
        will see it, and the connect stage — the refusal to send before closing, or None to greet."""
        self._remote = f"{ip}:{port}"
        mail_event(
            "connect", sid=self.sid, remote=self._remote, listener=listener.mode, local=listener.address
        )
        if self.tls is not None:
            self.log_tls()
        self._client = self.policy.client(
            sid=self.sid, ip=ip, port=port, listener=listener.mode, local=listener.address, tls=self.tls
        )
        decision = await self.policy.pipeline.run(Stage.CONNECT, self.client())
        return self.refused(Stage.CONNECT, decision, remote=self._remote)

    def log_tls(self) -> None:
        version, _, cipher = (self.tls or "").partition(" ")
        mail_event("tls", sid=self.sid, version=version, cipher=cipher)

    def closed(self, commands: int, duration_s: float, reason: str) -> None:
        mail_event(
            "disconnect",
            sid=self.sid,
            remote=self._remote,
            commands=commands,
            duration_s=round(duration_s, 3),
            reason=reason,
        )

    def client(self) -> Client:
        """The client as the checks see it now (a new frozen value when HELO, TLS or AUTH changed)."""
        client = self._client
        assert client is not None
        user = self._auth.user
        if (client.helo, client.esmtp, client.tls, client.auth_user) != (
            self.helo,
            self.esmtp,
            self.tls,
            user,
        ):
            # A new value by hand, not dataclasses.replace (several times slower): every session.
            client = Client(
                sid=client.sid,
                ip=client.ip,
                port=client.port,
                listener=client.listener,
                local=client.local,
                is_trusted=client.is_trusted,
                tls=self.tls,
                helo=self.helo,
                esmtp=self.esmtp,
                auth_user=user,
            )
            self._client = client
        return client

    def refused(self, stage: Stage, decision: Decision, **fields: object) -> Reply | None:
        """The reply when the stage refused (logged as one ``reject``), else None."""
        verdict = decision.verdict
        if verdict.is_refusal:
            assert verdict.reply is not None
            mail_event(
                "reject",
                sid=self.sid,
                stage=stage.value,
                reply=str(verdict.reply),
                check=verdict.check,
                reason=verdict.reason or None,
                **fields,
            )
            return verdict.reply
        for noted in decision.verdicts:
            mail_event(
                "verdict",
                sid=self.sid,
                stage=stage.value,
                check=noted.check,
                action=noted.action.value,
                reason=noted.reason or None,
                score=noted.score or None,
            )
        return None

    async def hello(self, event: Hello) -> Reply | None:
        """The HELO stage: the refusal, or None (the session sends the EHLO/HELO reply)."""
        self.helo = event.name
        self.esmtp = event.verb.upper() != "HELO"
        mail_event("helo", sid=self.sid, name=event.name, verb=event.verb.upper())
        decision = await self.policy.pipeline.run(Stage.HELO, self.client(), event.name)
        refusal = self.refused(Stage.HELO, decision)
        if refusal is not None:
            self.helo, self.esmtp = "", False
        return refusal

    async def mail(self, event: MailFrom) -> Reply:
        self.live = self.server.live  # each transaction runs under the policy of its MAIL FROM
        self._mail_at = time.monotonic()
        txn = self._txn = Transaction(event.sender, event.params)
        decision = await self.policy.pipeline.run(Stage.MAIL, self.client(), txn)
        from_ = f"<{'' if event.sender is None else str(event.sender)}>"
        refusal = self.refused(Stage.MAIL, decision, from_=from_, user=self._auth.user)
        return S.SENDER_OK if refusal is None else refusal

    async def rcpt(self, event: RcptTo) -> Reply:
        txn = self._txn
        assert txn is not None  # the engine passes RCPT on only inside a transaction
        decision = await self.policy.pipeline.run(Stage.RCPT, self.client(), txn, event.recipient)
        refusal = self.refused(Stage.RCPT, decision, rcpt=f"<{event.recipient.address}>")
        if refusal is not None:
            return refusal
        txn.recipients.append(event.recipient)
        return S.RECIPIENT_OK

    async def message(
        self,
        event: MessageReceived,
        received: bytes | MessageBody,
        *,
        listener: str,
        flush: Callable[[], None],
    ) -> Reply:
        """The end of data: the data stage, then the queue (intake.py)."""
        client = self.client()
        txn = self._txn or Transaction(event.sender, event.params)
        self._txn = None
        info = client_info(
            ip=client.ip,
            port=client.port,
            helo=self.helo,
            esmtp=self.esmtp,
            tls=self.tls,
            auth_user=client.auth_user,
            listener=listener,
            smtputf8=event.params.smtputf8,
        )
        return await queue_message(
            self.server, self.live, event, received, info, client, txn, mail_at=self._mail_at, flush=flush
        )
