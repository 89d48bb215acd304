"""One SMTP session: the asyncio driver around the sans-IO ``smtp.ServerConnection``.

Theory of operation. ``data_received`` only feeds bytes to the engine and wakes the session task, which
pulls events in order and answers each with exactly one reply: the engine's own (``Answered``), or the
policy's (``stages.py``: connect, HELO, MAIL, RCPT, end of data through ``intake.py``; AUTH is
``auth_flow.py``). Replies are written in one batch when the engine needs input or before a slow await
(RFC 2920 pipelining). Each wait has its RFC 5321 §4.5.3.2 timeout (``inputwait.py``), cut short by the
message's data deadline (``spooling.py``). Admission is counted in ``connection_made`` (for implicit
TLS before the handshake, ``tlsaccept.py``). Memory is bounded: reading pauses past
``_READ_HIGH_WATER`` unprocessed octets, commands stop while the write buffer is full, large messages
go to a spool file, and at most ``_EVENTS_PER_TURN`` events are answered before other sessions run.
An unexpected exception ends this session alone with ``421 4.3.0``; the traceback is logged under the
session id, and nothing of it reaches the client.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import TYPE_CHECKING, cast

from postier.mail.replies import S, greeting
from postier.mail.reply import Reply
from postier.observe import get_logger, mail_event
from postier.server import tls
from postier.server.auth_flow import SessionAuth
from postier.server.inputwait import InputWait
from postier.server.spooling import Receiving
from postier.server.stages import SessionStages
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    Answered,
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MailFrom,
    MessageData,
    MessageReceived,
    Quit,
    RcptTo,
    Rejected,
    StartTls,
)
from postier.spool import MessageBody

if TYPE_CHECKING:
    from postier.server.listener import Listener, SmtpServer

__all__ = ["Session", "new_session_id"]

_READ_HIGH_WATER = 256 * 1024
_EVENTS_PER_TURN = 16  # events answered before the session lets the other sessions run
_log = get_logger("postier.server")


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_SHIFTS = (35, 30, 25, 20, 15, 10, 5, 0)


def new_session_id() -> str:
    """Short, unique enough for a day of logs, safe in a log line: 40 random bits in 8 characters of
    the RFC 4648 base32 alphabet, lower case (what ``base64.b32encode`` gives, without its cost)."""
    n = int.from_bytes(os.urandom(5), "big")
    return "".join([_B32[(n >> shift) & 31] for shift in _SHIFTS])


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
        self._commands = 0
        self._started = time.monotonic()
        self._end_reason = "closed"  # quit | timeout | error | shutdown | closed (by the client)
        self._auth = SessionAuth(source=server, sid=self.sid, client_ip="", flush=self._flush)
        self._handshaking: list[bytes] | None = None
        # The key the server counted this connection under; given when it was admitted before the
        # TLS handshake (implicit TLS, server/tlsaccept.py), else counted in connection_made.
        self.admission_key = admission_key or ""
        self.is_admitted = admission_key is not None
        self._stages = SessionStages(server, self.sid, self._auth)
        self._soft_errors = max(listener.settings.max_errors // 2, 1)
        self._receiving = Receiving(
            spool_dir=server.spool_dir,
            sid=self.sid,
            budget=server.memory,
            data_timeout_s=server.live.data_timeout_s,
            min_rate=server.min_data_bytes_per_s,
        )

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement the same interface.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.client_ip, self.client_port = str(peer[0]), int(peer[1])
        self._auth.client_ip = self.client_ip
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._stages.tls = tls.describe(ssl_object)
        refusal = self.server.admit(self, self._stages.live.policy)
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
        self._conn = ServerConnection(self.listener.engine_settings(is_tls=self._stages.tls is not None))
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
        self._receiving.on_input(self._conn, len(data))
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
        return self._stages.tls is None

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
        try:
            refusal = await self._stages.open(self.client_ip, self.client_port, self.listener)
            if refusal is not None:
                self._end_reason = "error"
                self._write_now(refusal)
                return
            if await self._refuse_early_talker():
                return
            await self._serve()
        except Exception:
            self._end_reason = "error"
            _log.exception("session %s: internal error", self.sid)
            self._write_now(S.INTERNAL_ERROR)
        finally:
            self._receiving.close()
            if self._input is not None:
                self._input.close()
            self._flush()
            if self._transport is not None and not self._transport.is_closing():
                self._transport.close()
            self._stages.closed(self._commands, time.monotonic() - self._started, self._end_reason)

    async def _refuse_early_talker(self) -> bool:
        """The early-talker pause, or the pregreet test (antispam/pregreet.py): the greeting's first line
        ``220-`` now, its last line after ``pregreet_s``; a client that talks first gets the last line,
        then 554 5.5.0 as the answer to what it sent, and is disconnected."""
        pregreet = self._stages.live.pregreet if self.listener.mode == "smtp" else None
        check, trusted = None, self._stages.client().is_trusted
        if pregreet is not None and pregreet.applies(self.client_ip, is_trusted=trusted):
            check = "pregreet"
            self._out.append(f"220-{self.server.hostname} ESMTP\r\n".encode())
            self._flush()
            await asyncio.sleep(pregreet.delay_s)
            if not self._early:
                pregreet.passes.passed(self.client_ip)
        elif self.listener.early_talker_delay_s > 0:
            await asyncio.sleep(self.listener.early_talker_delay_s)
        if self._early:
            reply, reason = str(S.EARLY_TALKER), "early talker"
            mail_event("reject", sid=self.sid, stage="connect", reply=reply, check=check, reason=reason)
            self._end_reason = "error"
            if check is not None:
                self._out.append(greeting(self.server.hostname).to_bytes())
            self._write_now(S.EARLY_TALKER)
            return True
        self._greeted = True
        assert self._conn is not None
        self._out.append(self._conn.send(greeting(self.server.hostname)))
        return False

    async def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        turn = 0
        while not self._lost:
            if not self._can_write.is_set():
                self._flush()
                await self._can_write.wait()
            turn += 1
            if turn > _EVENTS_PER_TURN:  # fairness: a pipelining flood takes turns with the others
                turn = 0
                self._flush()
                await asyncio.sleep(0)
            event = conn.next_event()
            if isinstance(event, MessageData):  # octets of a large message: to its spool file
                self._receiving.spool.write(event.parts)
                self._receiving.on_output(conn)
                continue
            if not isinstance(event, Event):
                if conn.is_closed or self._eof or not await self._wait_input():
                    return
                turn = 0
                continue
            reply = await self._answer(event)
            if reply.code >= 500 and conn.errors >= self._soft_errors and self.server.error_delay_s > 0:
                self._flush()  # a tarpit for a client past half its errors: time, not CPU
                await asyncio.sleep(self.server.error_delay_s)
            self._out.append(conn.send(reply))
            self._receiving.after(event)
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
        conn = self._conn
        assert conn is not None and self._input is not None
        live = self._stages.live
        timeout = live.data_timeout_s if conn.is_reading_data else live.command_timeout_s
        timeout = self._receiving.wait_s(conn, asyncio.get_running_loop().time(), timeout)
        if timeout <= 0:  # the message came in slower than server.min_data_bytes_per_s
            self._end_reason = "timeout"
            self._write_now(S.TIMEOUT)
            return False
        if self._stopping:
            self._end_reason = "shutdown"
            self._write_now(S.SERVICE_UNAVAILABLE)
            return False
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
            return await self._stages.mail(event)
        if isinstance(event, RcptTo):
            return await self._stages.rcpt(event)
        if isinstance(event, DataStart):
            return S.START_DATA
        if isinstance(event, MessageReceived):
            return await self._queue_message(event)
        if isinstance(event, StartTls):
            return S.TLS_READY if self._stages.live.tls_context() is not None else S.TLS_UNAVAILABLE
        if isinstance(event, AuthStart):
            return await self._auth.start(event)
        if isinstance(event, AuthResponse):
            return await self._auth.respond(event)
        raise AssertionError(f"unhandled event {event!r}")

    # --- the policy's stages (stages.py) -------------------------------------------------------------

    async def _hello(self, event: Hello) -> Reply:
        assert self._conn is not None
        refusal = await self._stages.hello(event)
        if refusal is not None:
            return refusal
        return self._conn.ehlo_reply() if self._stages.esmtp else Reply(250, None, self.server.hostname)

    async def _queue_message(self, event: MessageReceived) -> Reply:
        content = self._receiving.message(event)
        if isinstance(content, Reply):
            return content
        try:
            return await self._stages.message(
                event, content, listener=self.listener.address, flush=self._flush
            )
        finally:
            if isinstance(content, MessageBody):
                content.close()

    # --- TLS -----------------------------------------------------------------------------------------

    async def _starttls(self) -> bool:
        """STARTTLS accepted: the handshake, then the engine starts again from EHLO (RFC 3207)."""
        assert self._conn is not None
        self._handshaking = []
        if not await self._start_tls():
            return False
        self._stages.helo, self._stages.esmtp = "", False
        self._conn.tls_established()
        early, self._handshaking = self._handshaking, None
        for data in early or ():
            self.data_received(data)
        return True

    async def _start_tls(self) -> bool:
        context = self._stages.live.tls_context()
        if context is None or self._transport is None:
            return False
        self._flush()
        try:
            transport = await tls.upgrade(
                self._transport, self, context, self._stages.live.handshake_timeout_s
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            mail_event("tls", sid=self.sid, result="failed", error=type(exc).__name__)
            self._end_reason = "error"
            return False
        if transport is None:
            return False
        self._transport = transport
        self._stages.tls = tls.describe(transport.get_extra_info("ssl_object"))
        self._stages.log_tls()
        return True

    # --- output ------------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self._out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _write_now(self, reply: Reply) -> None:
        self._out.append(reply.to_bytes())
        self._flush()
