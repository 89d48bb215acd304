"""Implicit-TLS listeners (RFC 8314, port 465): admission before the handshake.

``loop.create_server(ssl=…)`` runs the TLS handshake before the session's protocol hears of the
connection, so an unfinished handshake would be counted by no limit: a client could hold file
descriptors by opening connections and never sending a ClientHello. Here the listener accepts the
socket itself, asks the server's admission (connection limits per client and in total) with the peer
address, and only then hands the socket to ``loop.connect_accepted_socket(…, ssl=…)`` with the
handshake timeout. A refused client gets ``421 4.7.0`` in clear text (no TLS has started) and is
closed; a handshake that fails or times out gives its admission slot back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from postier.mail.reply import Reply
from postier.observe import get_logger, mail_event

__all__ = ["ImplicitTlsAcceptor"]

_log = get_logger("postier.server")

Admit = Callable[[str], tuple[str, Reply | None]]
"""The server's admission for a peer address: ``(key, None)`` counted in, or ``(key, refusal)``."""


class ImplicitTlsAcceptor:
    def __init__(
        self,
        sock: socket.socket,
        *,
        admit: Admit,
        release: Callable[[str], None],
        protocol: Callable[[str], asyncio.Protocol],
        context: Callable[[], ssl.SSLContext | None],
        handshake_timeout_s: Callable[[], float],
    ) -> None:
        self.sock = sock
        self._admit, self._release, self._protocol = admit, release, protocol
        self._context, self._timeout = context, handshake_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self._task = asyncio.get_running_loop().create_task(self._accept_forever(), name="accept-tls")

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as exc:  # EMFILE and friends: wait a little, as the kernel queue holds them
                _log.error("accept on %s failed: %s", self.sock.getsockname(), exc)
                await asyncio.sleep(0.1)
                continue
            key, refusal = self._admit(str(peer[0]))
            if refusal is not None:
                mail_event(
                    "reject",
                    remote=f"{peer[0]}:{peer[1]}",
                    stage="connect",
                    reply=str(refusal),
                    check="admission",
                )
                with contextlib.suppress(OSError):
                    conn.send(refusal.to_bytes())
                conn.close()
                continue
            task = loop.create_task(self._handshake(conn, key))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, key: str) -> None:
        loop = asyncio.get_running_loop()
        context = self._context()
        try:
            if context is None:
                raise ssl.SSLError("no certificate")
            await loop.connect_accepted_socket(
                lambda: self._protocol(key), conn, ssl=context, ssl_handshake_timeout=self._timeout()
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            mail_event("tls", result="failed", error=type(exc).__name__)
            self._release(key)
            conn.close()

    async def close(self) -> None:
        """Stop accepting; abandon handshakes under way (their sessions never started)."""
        tasks = [t for t in (self._task, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.sock.close()
