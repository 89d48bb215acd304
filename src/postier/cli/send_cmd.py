"""``postier send``: a test sender for the operator that shows the whole SMTP conversation.

Theory of operation: a small blocking SMTP client of its own (socket + ssl, no smtplib) so that every
line sent (``C:``) and received (``S:``) is printed as it crosses the wire, and under each server
reply a one-line explanation from ``postier.mail.explain``. It stops at the first reply that ends
the transaction (a refused MAIL, every RCPT refused, a refused DATA) and says QUIT politely.

What is never printed: the AUTH payload (shown as ``<credentials hidden>``) and the message body
(shown as its size). The password comes from a prompt on a terminal or the first line of standard
input, never from the command line, where ``ps`` would show it to every local user.

Exit status: 0 when the server accepted the message (its queue id is printed), 1 when it refused it
or could not be reached, 2 for usage errors (bad ``--server``, unreadable ``--body``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import socket
import ssl
import sys
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, BinaryIO

from postier.mail.explain import explain

__all__ = ["handler", "register"]

_TIMEOUT_S = 30.0
_DEFAULT_BODY = b"This is a test message sent by postier send.\r\n"


class _Refused(Exception):
    """The server refused a step; the reply was already printed."""


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


def register(subparsers: Any) -> None:
    """Add the ``send`` command to ``postier``'s sub-parsers (``argparse._SubParsersAction``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "send",
        help="send a test message and print the SMTP transcript, each reply explained",
        description="Send one test message and print the whole SMTP conversation. "
        "Exit status: 0 accepted, 1 refused or unreachable, 2 usage error.",
    )
    parser.add_argument("--to", action="append", required=True, metavar="ADDR", help="recipient (repeatable)")
    parser.add_argument(
        "--from",
        dest="sender",
        metavar="ADDR",
        help="sender (default: the --auth user, else postier-send@localhost)",
    )
    parser.add_argument(
        "--server", default="127.0.0.1:2525", metavar="HOST:PORT", help="default: %(default)s"
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS from the first byte (port 465)")
    tls.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS after EHLO (port 587)")
    parser.add_argument("--auth", metavar="USER", help="AUTH PLAIN as USER; password from a prompt or stdin")
    parser.add_argument("--body", type=Path, metavar="FILE", help="message body text (headers are added)")
    parser.add_argument("--subject", default="Postier test message", metavar="TEXT")
    parser.add_argument("--insecure", action="store_true", help="do not check the server's certificate")
    parser.set_defaults(func=handler)


def _split_server(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--server must be HOST:PORT, not {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _one_line(reply: _Reply) -> str:
    """The explanation shown under a reply: the most specific meaning and, on failure, its outcome."""
    try:
        expl = explain(f"{reply.code} {reply.lines[0][4:]}")
    except ValueError:
        return "(not a valid SMTP reply)"
    specific = expl.enhanced if expl.enhanced and not expl.enhanced.code.endswith(".0") else expl.basic
    entry = specific or expl.basic or expl.enhanced
    meaning = entry.meaning if entry else "unknown code"
    return f"{expl.outcome}: {meaning}" if expl.outcome in ("transient", "permanent") else meaning


class _Client:
    """One SMTP connection, printing every line it sends and receives."""

    def __init__(self, sock: socket.socket, host: str, out: Any) -> None:
        self.sock = sock
        self.host = host
        self.out = out
        self.file: BinaryIO = sock.makefile("rb")

    def upgrade(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb")
        assert isinstance(self.sock, ssl.SSLSocket)
        cipher = self.sock.cipher()
        print(f"   [TLS established: {self.sock.version()} {cipher[0] if cipher else ''}]", file=self.out)

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def read(self) -> _Reply:
        lines: list[str] = []
        while True:
            raw = self.file.readline(4096)
            if not raw:
                raise ConnectionError("the server closed the connection")
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            print(f"S: {line}", file=self.out)
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        code = int(lines[0][:3]) if lines[0][:3].isdigit() else 0
        reply = _Reply(code, tuple(lines))
        print(f"   = {_one_line(reply)}", file=self.out)
        return reply

    def command(self, line: str, shown: str | None = None, *, must: bool = True) -> _Reply:
        print(f"C: {shown or line}", file=self.out)
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        reply = self.read()
        if must and not reply.ok:
            raise _Refused
        return reply

    def data(self, message: bytes) -> _Reply:
        # RFC 5321 §4.5.2: a line starting with "." gets one more "."; the data ends with CRLF.CRLF.
        lines = message.replace(b"\r\n", b"\n").removesuffix(b"\n").split(b"\n")
        stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
        print(f"C: <message: {len(message)} octets, {len(lines)} lines, not shown>", file=self.out)
        print("C: .", file=self.out)
        self.sock.sendall(stuffed + b"\r\n.\r\n")
        return self.read()


def _password() -> str:
    """A prompt on a terminal; otherwise the first line of standard input (for scripts)."""
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _message(args: argparse.Namespace, body: bytes) -> bytes:
    headers = [
        f"From: <{args.sender}>",
        "To: " + ", ".join(f"<{rcpt}>" for rcpt in args.to),
        f"Subject: {args.subject}",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@postier-send>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body


def _context(insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _transaction(client: _Client, args: argparse.Namespace, message: bytes, password: str | None) -> str:
    """EHLO … DATA; returns the final reply's text. Raises _Refused when the server says no."""
    helo = f"EHLO {socket.gethostname() or 'localhost'}"
    if not client.read().ok:
        raise _Refused
    client.command(helo)
    if args.starttls:
        client.command("STARTTLS")
        client.upgrade(_context(args.insecure))
        client.command(helo)
    if args.auth is not None:
        token = base64.b64encode(f"\0{args.auth}\0{password}".encode()).decode()
        client.command(f"AUTH PLAIN {token}", "AUTH PLAIN <credentials hidden>")
    client.command(f"MAIL FROM:<{args.sender}>")
    accepted = [rcpt for rcpt in args.to if client.command(f"RCPT TO:<{rcpt}>", must=False).ok]
    if not accepted:
        raise _Refused
    client.command("DATA")
    final = client.data(message)
    if not final.ok:
        raise _Refused
    return final.lines[-1][4:]


def handler(args: argparse.Namespace) -> int:
    try:
        host, port = _split_server(args.server)
        body = args.body.read_bytes() if args.body is not None else _DEFAULT_BODY
    except (ValueError, OSError) as exc:
        print(f"postier send: {exc}", file=sys.stderr)
        return 2
    password = _password() if args.auth is not None else None
    if args.sender is None:
        args.sender = args.auth if args.auth and "@" in args.auth else "postier-send@localhost"
    message = _message(args, body)
    out = sys.stdout
    try:
        sock = socket.create_connection((host, port), timeout=_TIMEOUT_S)
    except OSError as exc:
        print(f"postier send: cannot connect to {args.server}: {exc}", file=sys.stderr)
        return 1
    print(f"   [connected to {args.server}]", file=out)
    client = _Client(sock, host, out)
    try:
        if args.tls:
            client.upgrade(_context(args.insecure))
        text = _transaction(client, args, message, password)
        _quit(client)
    except _Refused:
        _quit(client)
        print("Refused: the server did not accept the message.", file=out)
        return 1
    except (OSError, ssl.SSLError) as exc:
        print(f"postier send: connection failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    queue_id = text.rsplit(" ", 1)[-1]
    print(f"Accepted: queued as {queue_id}", file=out)
    return 0


def _quit(client: _Client) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        client.command("QUIT", must=False)
