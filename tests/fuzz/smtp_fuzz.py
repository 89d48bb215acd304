"""Fuzz harness for the server engine. Invariant: any bytes, in any split, give events or replies —
never an exception — and the engine always comes back to NEED_DATA.

Run longer standalone: ``.venv/bin/python tests/fuzz/smtp_fuzz.py 100000 [seed]``.
"""

from __future__ import annotations

import random
import sys

from postier.mail.replies import S, greeting, queued
from postier.mail.reply import Reply
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    NEED_DATA,
    Answered,
    AuthResponse,
    AuthStart,
    DataStart,
    Event,
    Hello,
    MessageReceived,
    StartTls,
)
from postier.smtp.server.settings import EngineSettings

SETTINGS = EngineSettings(
    max_message_bytes=2000,
    max_recipients=5,
    max_errors=50,
    max_command_line=128,
    max_text_line=200,
    can_starttls=True,
    auth_mechanisms=("PLAIN",),
    auth_requires_tls=False,
)

# Fragments that reach deep states quickly when mixed with noise.
SEEDS = [
    b"EHLO x\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b>\r\n",
    b"MAIL FROM:<> BODY=BINARYMIME SMTPUTF8\r\n",
    b"RCPT TO:<c@d> NOTIFY=NEVER\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 4\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"..",
    b"RSET\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AHUAcA==\r\n",
    b"*\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"\xff\xfe",
    b"\x00",
    b"x" * 300,
    b"\r",
    b"\n",
    "MAIL FROM:<δ@ü.example>\r\n".encode(),
]


def decide(conn: ServerConnection, event: Event, rng: random.Random) -> Reply:
    """A driver that mostly accepts and sometimes refuses."""
    if isinstance(event, Answered):
        return event.reply
    if rng.random() < 0.15:
        return rng.choice([S.UNKNOWN_USER, S.RATE_LIMITED, S.QUEUE_ERROR])
    if isinstance(event, Hello):
        return conn.ehlo_reply()
    if isinstance(event, DataStart):
        return S.START_DATA
    if isinstance(event, MessageReceived):
        return queued("FUZZ")
    if isinstance(event, StartTls):
        return S.TLS_READY
    if isinstance(event, AuthStart | AuthResponse):
        return rng.choice([Reply(334, None, ""), S.AUTH_OK, S.AUTH_FAILED])
    return S.OK


def random_input(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 30)):
        if rng.random() < 0.6:
            parts.append(rng.choice(SEEDS))
        else:
            parts.append(rng.randbytes(rng.randint(0, 20)))
    return b"".join(parts)


def run_one(data: bytes, rng: random.Random) -> int:
    """Play ``data`` in random pieces; returns the number of events. Raises only on an engine bug."""
    conn = ServerConnection(SETTINGS)
    conn.send(greeting("fuzz"))
    events = 0
    pos = 0
    while pos < len(data) and not conn.is_closed:
        step = rng.randint(1, 64)
        conn.receive_data(data[pos : pos + step])
        pos += step
        while (event := conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type(NEED_DATA))
            events += 1
            conn.send(decide(conn, event, rng))
            if isinstance(event, StartTls) and not conn.is_closed:
                conn.tls_established()
    return events


def fuzz(iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(iterations):
        data = random_input(rng)
        try:
            run_one(data, rng)
        except Exception:
            print(f"iteration {i} (seed {seed}) failed on {data!r}", file=sys.stderr)
            raise


if __name__ == "__main__":
    fuzz(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
