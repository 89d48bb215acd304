"""SMTP transcripts: scripted dialogues, played against the engine here and over a socket by the
server tests. Stdlib and postier only, so any runner can import this file.

Format (one file holds several scenarios, separated by blank lines)::

    # A comment; the first comment line of a scenario is its name.
    @ can_starttls=true max_recipients=2      EngineSettings overrides for this scenario
    S: 220 *                                  one expected reply line; "*" matches any text
    C: EHLO client.example                    one client line; CRLF is appended
    B: DATA\\r\\nbare\\nLF\\r\\n.\\r\\n             raw client bytes, Python escapes, sent as is
    S: 250-*
    ! tls                                     the client does the TLS handshake now
    ! close                                   the server has closed the connection

Consecutive ``C:``/``B:`` lines are sent together (one write: pipelining); ``S:`` lines are then read
in order. Every reply the server sends must be matched by an ``S:`` line.

The driver's decisions are one documented default, ``DEFAULT_DECISIONS``: accept everything — greeting
``220 <hostname> ESMTP Postier``, EHLO with ``conn.ehlo_reply()``, HELO ``250 <hostname>``, 250 to MAIL
and RCPT, 354 to DATA, ``250 2.0.0 Ok: queued as TESTID`` at the end of data, 220 to STARTTLS, and
AUTH PLAIN succeeding for user ``user`` / password ``password`` (535 5.7.8 otherwise; 334 with an empty
challenge when there is no initial response). Engine-answered events get their own reply.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    MailFrom,
    MessageReceived,
    RcptTo,
    StartTls,
)
from postier.smtp.server.settings import EngineSettings

__all__ = [
    "DEFAULT_DECISIONS",
    "QUEUE_ID",
    "Step",
    "Transcript",
    "decide",
    "load_transcripts",
    "run_against_engine",
]

QUEUE_ID = "TESTID"
TEST_USER, TEST_PASSWORD = "user", "password"
DEFAULT_DECISIONS = __doc__


@dataclass(frozen=True)
class Step:
    kind: str  # "C" (line), "B" (raw bytes), "S" (expected reply line), "!" (action: tls, close)
    text: str
    line: int

    @property
    def data(self) -> bytes:
        """What the client sends for a C/B step."""
        if self.kind == "C":
            return self.text.encode("utf-8") + b"\r\n"
        return codecs.escape_decode(self.text.encode("utf-8"))[0]  # type: ignore[no-any-return]

    def matches(self, reply_line: str) -> bool:
        pattern = ".*".join(re.escape(part) for part in self.text.split("*"))
        return re.fullmatch(pattern, reply_line, re.DOTALL) is not None


@dataclass
class Transcript:
    name: str
    path: str
    line: int
    settings: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def engine_settings(self, base: EngineSettings | None = None) -> EngineSettings:
        """``base`` (default: EngineSettings()) with this scenario's ``@`` overrides applied."""
        base = base or EngineSettings()
        changes: dict[str, object] = {}
        for key, raw in self.settings.items():
            current = getattr(base, key)
            if isinstance(current, bool):
                changes[key] = raw.lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                changes[key] = int(raw)
            elif isinstance(current, tuple):
                changes[key] = tuple(part for part in raw.split(",") if part)
            else:
                changes[key] = raw
        return dataclasses.replace(base, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{Path(self.path).name}:{self.line} {self.name}"


def load_transcripts(path: str | Path) -> list[Transcript]:
    """Every scenario of one file (or of every ``*.txt`` file of a directory, sorted)."""
    path = Path(path)
    if path.is_dir():
        return [t for file in sorted(path.glob("*.txt")) for t in load_transcripts(file)]
    scenarios: list[Transcript] = []
    current: Transcript | None = None
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip():
            current = None
            continue
        if current is None:
            current = Transcript(name="", path=str(path), line=number)
            scenarios.append(current)
        if line.startswith("#"):
            current.name = current.name or line.lstrip("# ").strip()
        elif line.startswith("@"):
            for word in line[1:].split():
                key, _, value = word.partition("=")
                current.settings[key] = value
        elif line[:2] in ("C:", "B:", "S:") or line.startswith("!"):
            kind = line[0]
            text = line[1:].strip() if kind == "!" else line[3:] if line[2:3] == " " else line[2:]
            current.steps.append(Step(kind, text, number))
        else:
            raise ValueError(f"{path}:{number}: cannot parse {line!r}")
    for scenario in scenarios:
        scenario.name = scenario.name or f"line {scenario.line}"
    return [s for s in scenarios if s.steps]


def decide(conn: ServerConnection, event: Event) -> Reply:
    """The default driver decisions (see the module docstring)."""
    if isinstance(event, Answered):
        return event.reply
    if isinstance(event, Hello):
        return conn.ehlo_reply() if event.verb == "EHLO" else Reply(250, None, conn.settings.hostname)
    if isinstance(event, MailFrom):
        return S.SENDER_OK
    if isinstance(event, RcptTo):
        return S.RECIPIENT_OK
    if isinstance(event, DataStart):
        return S.START_DATA
    if isinstance(event, MessageReceived):
        return queued(QUEUE_ID)
    if isinstance(event, StartTls):
        return S.TLS_READY
    if isinstance(event, AuthStart | AuthResponse):
        response = event.initial_response if isinstance(event, AuthStart) else event.data
        if response is None:
            return Reply(334, None, "")
        expected = base64.b64encode(f"\0{TEST_USER}\0{TEST_PASSWORD}".encode()).decode()
        return S.AUTH_OK if response == expected else S.AUTH_FAILED
    raise AssertionError(f"no default decision for {event!r}")


def _pump(conn: ServerConnection) -> Iterator[str]:
    """Answer every event the engine has ready; yield the reply lines."""
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return
        assert not isinstance(event, type(NEED_DATA))
        yield from conn.send(decide(conn, event)).decode("utf-8").split("\r\n")[:-1]


def run_against_engine(transcript: Transcript, settings: EngineSettings | None = None) -> None:
    """Play ``transcript`` against a ServerConnection; AssertionError says where it diverged."""
    conn = ServerConnection(transcript.engine_settings(settings))
    said = conn.send(greeting(conn.settings.hostname)).decode("utf-8").split("\r\n")[:-1]
    for step in transcript.steps:
        where = f"{transcript}: line {step.line}"
        if step.kind in ("C", "B"):
            assert not conn.is_closed, f"{where}: the server has closed; cannot send {step.text!r}"
            conn.receive_data(step.data)
            said += _pump(conn)
        elif step.kind == "S":
            assert said, f"{where}: expected {step.text!r}, the server said nothing"
            got = said.pop(0)
            assert step.matches(got), f"{where}: expected {step.text!r}, got {got!r}"
        elif step.text == "tls":
            conn.tls_established()
            said += _pump(conn)
        elif step.text == "close":
            assert conn.is_closed, f"{where}: expected the server to close"
        else:
            raise AssertionError(f"{where}: unknown action {step.text!r}")
    assert not said, f"{transcript}: unexpected replies at the end: {said!r}"
