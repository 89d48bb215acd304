"""One SMTP session: the asyncio driver around the sans-IO ``smtp.ServerConnection``.

Theory of operation. ``data_received`` only feeds bytes to the engine and wakes the session task.
The task pulls events in order, answers each with exactly one reply (the engine's own for ``Answered``
events, a decision of policy/queue for the others) and collects the reply bytes. Replies are written in
one batch when the engine needs more input or before the task awaits something slow (the queue), so a
pipelining client (RFC 2920) gets its replies in few segments and never waits on a reply we hold back.

Each wait for input has the RFC 5321 §4.5.3.2 timeout of what is awaited (a command, a DATA block),
kept by one timer per session (``inputwait.py``). Every accept/refuse decision is the policy's
(``postier.policy``): the session asks its pipeline at connect, HELO, MAIL, RCPT and the end of data
(``intake.py``) and obeys the answer; AUTH is ``auth_flow.py``. The session takes the server's ``Live``
(policy, TLS, AUTH, timeouts) at connect and again at each MAIL FROM, and keeps it to the end of the
transaction, so a reload never changes the rules under a transaction.

Admission (connection limits) is counted in ``connection_made``, before anything else; on an
implicit-TLS listener it was counted before the handshake (``tlsaccept.py``) and the session starts
after it.

Reading is paused while more than ``_READ_HIGH_WATER`` octets wait unprocessed, and the task stops
taking commands while the transport's write buffer is full, so neither a fast sender nor a client
that does not read its replies can grow our memory without bound.

An unexpected exception ends this session alone with ``421 4.3.0``; the traceback is logged under the
session id, and nothing of it reaches the client.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import time
from dataclasses import replace
from typing import TYPE_CHECKING, cast

from postier.mail.replies import S, greeting
from postier.mail.reply import Reply
from postier.observe import get_logger, mail_event
from postier.policy import Client, Decision, Policy, Stage, Transaction
from postier.server.auth_flow import SessionAuth
from postier.server.inputwait import InputWait
from postier.server.intake import client_info, queue_message
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    Answered,
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageReceived,
    Quit,
    RcptTo,
    Rejected,
    StartTls,
)

if TYPE_CHECKING:
    from postier.server.listener import Listener, Live, SmtpServer

__all__ = ["Session", "new_session_id"]

_READ_HIGH_WATER = 1 << 20
_log = get_logger("postier.server")


def new_session_id() -> str:
    """Short, unique enough for a day of logs, safe in a log line."""
    return base64.b32encode(os.urandom(5)).decode("ascii").lower()


class Session(asyncio.Protocol):
    def __init__(self, server: SmtpServer, listener: Listener, admission_key: str | None = None) -> None:
        self.server = server
        self.listener = listener
        self.sid = new_session_id()
        self.client_ip = ""
        self.client_port = 0
        self._transport: asyncio.Transport | None = None
        self._conn: ServerConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._input: InputWait | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._out: list[bytes] = []
        self._pending_in = 0
        self._paused = False
        self._eof = False
        self._lost = False
        self._greeted = False
        self._early = False
        self._stopping = False
        self._helo = ""
        self._esmtp = False
        self._tls: str | None = None
        self._commands = 0
        self._started = time.monotonic()
        self._end_reason = "closed"  # quit | timeout | error | shutdown | closed (by the client)
        self._auth = SessionAuth(source=server, sid=self.sid, client_ip="", flush=self._flush)
        self._handshaking: list[bytes] | None = None
        self._mail_at = 0.0  # monotonic time of the MAIL FROM that began the transaction
        # The key the server counted this connection under; given when it was admitted before the
        # TLS handshake (implicit TLS, server/tlsaccept.py), else counted in connection_made.
        self.admission_key = admission_key or ""
        self.is_admitted = admission_key is not None
        self._live: Live = server.live
        self._client: Client | None = None
        self._txn: Transaction | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement the same interface.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        self._auth.client_ip = self.client_ip
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = _tls_description(ssl_object)
        refusal = self.server.admit(self, self._live.policy)
        if refusal is not None:
            mail_event(
                "reject",
                remote=f"{self.client_ip}:{self.client_port}",
                stage="connect",
                reply=str(refusal),
                check="admission",
            )
            self._transport.write(refusal.to_bytes())
            self._transport.close()
            return
        self._conn = ServerConnection(self.listener.engine_settings(is_tls=self._tls is not None))
        loop = asyncio.get_running_loop()
        self._input = InputWait(loop)
        self._task = loop.create_task(self._run(), name=f"smtp-{self.sid}")

    def data_received(self, data: bytes) -> None:
        if self._conn is None:
            return
        if self._handshaking is not None:
            # Decrypted bytes that arrive before start_tls() returns: keep them for the engine until
            # tls_established(), which would otherwise drop them as pre-handshake plaintext.
            self._handshaking.append(data)
            return
        if not self._greeted:
            self._early = True
        self._conn.receive_data(data)
        self._pending_in += len(data)
        if self._pending_in > _READ_HIGH_WATER and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if self._conn is not None:
            self._conn.receive_data(b"")
        self._wake()
        # Keep the write side open to answer what was pipelined before the EOF (not possible under TLS).
        return self._tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake()
        self._can_write.set()
        self.server.release(self)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # --- control from the server -----------------------------------------------------------------

    def stop(self) -> None:
        """Shutdown: the session ends with 421 4.3.2 the next time it waits for the client."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        if self._input is not None:
            self._input.wake()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # --- the session task ------------------------------------------------------------------------

    async def _run(self) -> None:
        mail_event(
            "connect",
            sid=self.sid,
            remote=f"{self.client_ip}:{self.client_port}",
            listener=self.listener.mode,
            local=self.listener.address,
        )
        if self._tls is not None:
            self._log_tls()
        try:
            self._client = self._live.policy.client(
                sid=self.sid,
                ip=self.client_ip,
                port=self.client_port,
                listener=self.listener.mode,
                local=self.listener.address,
                tls=self._tls,
            )
            if not await self._connect_checks() or await self._refuse_early_talker():
                return
            await self._serve()
        except Exception:
            self._end_reason = "error"
            _log.exception("session %s: internal error", self.sid)
            self._write_now(S.INTERNAL_ERROR)
        finally:
            if self._input is not None:
                self._input.close()
            self._flush()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.close()
            mail_event(
                "disconnect",
                sid=self.sid,
                remote=f"{self.client_ip}:{self.client_port}",
                commands=self._commands,
                duration_s=round(time.monotonic() - self._started, 3),
                reason=self._end_reason,
            )

    async def _refuse_early_talker(self) -> bool:
        delay = self.listener.early_talker_delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        if self._early:
            mail_event(
                "reject", sid=self.sid, stage="connect", reply=str(S.EARLY_TALKER), reason="early talker"
            )
            self._end_reason = "error"
            self._write_now(S.EARLY_TALKER)
            return True
        self._greeted = True
        assert self._conn is not None
        self._out.append(self._conn.send(greeting(self.server.hostname)))
        return False

    async def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._lost:
            if not self._can_write.is_set():
                self._flush()
                await self._can_write.wait()
            event = conn.next_event()
            if not isinstance(event, Event):
                if conn.is_closed or self._eof or not await self._wait_input():
                    return
                continue
            reply = await self._answer(event)
            self._out.append(conn.send(reply))
            if isinstance(event, Quit) or reply.code == 421 or conn.is_closed:
                self._end_reason = "quit" if isinstance(event, Quit) else "error"
                return
            if isinstance(event, StartTls) and reply.code == 220 and not await self._starttls():
                return

    async def _wait_input(self) -> bool:
        """Flush replies and wait for bytes. False when the session must end (timeout, shutdown)."""
        self._flush()
        self._pending_in = 0
        if self._paused and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        reading_data = self._conn is not None and self._conn.is_reading_data
        live = self._live
        timeout = live.data_timeout_s if reading_data else live.command_timeout_s
        if self._stopping:
            self._end_reason = "shutdown"
            self._write_now(S.SERVICE_UNAVAILABLE)
            return False
        assert self._input is not None
        if not await self._input.wait(timeout):
            self._end_reason = "timeout"
            self._write_now(S.TIMEOUT)
            return False
        if self._stopping and not self._lost:
            self._end_reason = "shutdown"
            self._write_now(S.SERVICE_UNAVAILABLE)
            return False
        return not self._lost

    async def _answer(self, event: Event) -> Reply:
        if isinstance(event, Answered):
            if isinstance(event, Rejected):
                mail_event(
                    "reject",
                    sid=self.sid,
                    stage=(event.command or "-").lower(),
                    reply=str(event.reply),
                )
            return event.reply
        self._commands += 1
        if isinstance(event, Hello):
            return await self._hello(event)
        if isinstance(event, MailFrom):
            return await self._mail(event)
        if isinstance(event, RcptTo):
            return await self._rcpt(event)
        if isinstance(event, DataStart):
            return S.START_DATA
        if isinstance(event, MessageReceived):
            return await self._queue_message(event)
        if isinstance(event, StartTls):
            return S.TLS_READY if self._live.tls_context() is not None else S.TLS_UNAVAILABLE
        if isinstance(event, AuthStart):
            return await self._auth.start(event)
        if isinstance(event, AuthResponse):
            return await self._auth.respond(event)
        raise AssertionError(f"unhandled event {event!r}")

    # --- the policy's stages ------------------------------------------------------------------------

    @property
    def _policy(self) -> Policy:
        return self._live.policy

    def _client_now(self) -> Client:
        """The client as the checks see it now (a new frozen value when HELO, TLS or AUTH changed it)."""
        client = self._client
        assert client is not None
        user = self._auth.user
        if (client.helo, client.esmtp, client.tls, client.auth_user) != (
            self._helo,
            self._esmtp,
            self._tls,
            user,
        ):
            client = self._client = replace(
                client, helo=self._helo, esmtp=self._esmtp, tls=self._tls, auth_user=user
            )
        return client

    def _refused(self, stage: Stage, decision: Decision, **fields: object) -> Reply | None:
        """The reply when the stage refused (logged as one ``reject``), else None; other verdicts logged."""
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

    async def _connect_checks(self) -> bool:
        """The connect stage; False when a check refused the client (told, and the session ends)."""
        decision = await self._policy.pipeline.run(Stage.CONNECT, self._client_now())
        refusal = self._refused(Stage.CONNECT, decision, remote=f"{self.client_ip}:{self.client_port}")
        if refusal is None:
            return True
        self._end_reason = "error"
        self._write_now(refusal)
        return False

    async def _hello(self, event: Hello) -> Reply:
        assert self._conn is not None
        self._helo = event.name
        self._esmtp = event.verb.upper() != "HELO"
        mail_event("helo", sid=self.sid, name=event.name, verb=event.verb.upper())
        decision = await self._policy.pipeline.run(Stage.HELO, self._client_now(), event.name)
        refusal = self._refused(Stage.HELO, decision)
        if refusal is not None:
            self._helo, self._esmtp = "", False
            return refusal
        return self._conn.ehlo_reply() if self._esmtp else Reply(250, None, self.server.hostname)

    async def _mail(self, event: MailFrom) -> Reply:
        self._live = self.server.live  # each transaction runs under the policy of its MAIL FROM
        self._mail_at = time.monotonic()
        txn = self._txn = Transaction(event.sender, event.params)
        decision = await self._policy.pipeline.run(Stage.MAIL, self._client_now(), txn)
        from_ = f"<{'' if event.sender is None else str(event.sender)}>"
        refusal = self._refused(Stage.MAIL, decision, from_=from_, user=self._auth.user)
        return S.SENDER_OK if refusal is None else refusal

    async def _rcpt(self, event: RcptTo) -> Reply:
        txn = self._txn
        assert txn is not None  # the engine sends RCPT only inside a transaction
        decision = await self._policy.pipeline.run(Stage.RCPT, self._client_now(), txn, event.recipient)
        refusal = self._refused(Stage.RCPT, decision, rcpt=f"<{event.recipient.address}>")
        if refusal is not None:
            return refusal
        txn.recipients.append(event.recipient)
        return S.RECIPIENT_OK

    async def _queue_message(self, event: MessageReceived) -> Reply:
        client = self._client_now()
        txn = self._txn or Transaction(event.sender, event.params)
        self._txn = None
        info = client_info(
            ip=self.client_ip,
            port=self.client_port,
            helo=self._helo,
            esmtp=self._esmtp,
            tls=self._tls,
            auth_user=client.auth_user,
            listener=self.listener.address,
            smtputf8=event.params.smtputf8,
        )
        return await queue_message(
            self.server, self._policy, event, info, client, txn, mail_at=self._mail_at, flush=self._flush
        )

    # --- TLS -----------------------------------------------------------------------------------------

    async def _starttls(self) -> bool:
        """STARTTLS accepted: the handshake, then the engine starts again from EHLO (RFC 3207)."""
        assert self._conn is not None
        self._handshaking = []
        if not await self._start_tls():
            return False
        self._helo, self._esmtp = "", False
        self._conn.tls_established()
        early, self._handshaking = self._handshaking, None
        for data in early or ():
            self.data_received(data)
        return True

    async def _start_tls(self) -> bool:
        context = self._live.tls_context()
        transport = self._transport
        if context is None or transport is None:
            return False
        self._flush()
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._live.handshake_timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            mail_event("tls", sid=self.sid, result="failed", error=type(exc).__name__)
            self._end_reason = "error"
            return False
        if new_transport is None:
            return False
        self._transport = new_transport
        self._tls = _tls_description(new_transport.get_extra_info("ssl_object"))
        self._log_tls()
        return True

    def _log_tls(self) -> None:
        version, _, cipher = (self._tls or "").partition(" ")
        mail_event("tls", sid=self.sid, version=version, cipher=cipher)

    # --- output ------------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _write_now(self, reply: Reply) -> None:
        self._out.append(reply.to_bytes())
        self._flush()


def _tls_description(ssl_object: ssl.SSLObject | None) -> str | None:
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return f"{ssl_object.version()} {cipher[0] if cipher else '?'}"
