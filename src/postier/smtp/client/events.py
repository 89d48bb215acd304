"""Events the client engine yields (``ClientConnection.next_event``), and its timeout settings.

Every event carries the peer's ``Reply``. ``is_local`` marks a reply the engine made up itself without
asking the peer (a capability check failed, so nothing was sent): the courier logs it as ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from postier.mail.envelope import Recipient
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.replies import Extensions

# Never expected (the engine fills every reply it waits for); a defensive "try again later".
_NOT_TRIED = Reply(451, EnhancedStatus(4, 4, 0), "No reply from the remote server for this step")

__all__ = [
    "AuthResult",
    "ClientEvent",
    "ClientTimeouts",
    "CommandReply",
    "ConnectionClosed",
    "ExtensionsKnown",
    "Greeting",
    "TransactionResult",
]


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """RFC 5321 §4.5.3.2 client timeouts, in seconds. ``data_block_s`` bounds each write of message
    data (§4.5.3.2.5); the others bound the wait for a reply."""

    greeting_s: float = 300.0  # §4.5.3.2.1 initial 220 message: 5 minutes
    command_s: float = 300.0  # EHLO, STARTTLS, AUTH, RSET, NOOP, QUIT (no RFC value: as MAIL)
    mail_s: float = 300.0  # §4.5.3.2.2 MAIL: 5 minutes
    rcpt_s: float = 300.0  # §4.5.3.2.3 RCPT: 5 minutes
    data_init_s: float = 120.0  # §4.5.3.2.4 DATA initiation (the 354): 2 minutes
    data_block_s: float = 180.0  # §4.5.3.2.5 data block: 3 minutes
    data_end_s: float = 600.0  # §4.5.3.2.6 DATA termination (the final reply): 10 minutes


@dataclass(frozen=True, slots=True)
class Greeting:
    """The server's opening reply: 220 (go on), 554 (refused: QUIT), or 421 (busy: try later)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ExtensionsKnown:
    """EHLO (or LHLO) was accepted — or refused and HELO accepted instead, then with no extensions."""

    reply: Reply
    extensions: Extensions
    verb: str = "EHLO"


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The reply to a one-step command: ``verb`` is EHLO/HELO/LHLO (refused), STARTTLS, RSET, NOOP or
    QUIT. A 220 to STARTTLS means: do the TLS handshake now, then call ``tls_established()``. An empty
    ``verb`` is an unsolicited reply (a 421 "closing" while nothing was asked)."""

    verb: str
    reply: Reply
    is_local: bool = False


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The end of an AUTH exchange: 235 is success (RFC 4954 §6), anything else a failure."""

    reply: Reply
    mechanism: str
    is_local: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection while nothing was asked of it."""


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """One MAIL … DATA transaction, reply by reply.

    ``mail`` answers MAIL FROM (or is the engine's own refusal when ``is_local``); ``rcpts`` has one
    entry per recipient, in order (None: never sent, because MAIL failed first without pipelining);
    ``data`` answers the DATA command (354 to go on); ``data_end`` holds the final replies: one for
    SMTP, one per accepted recipient for LMTP (RFC 2033 §4.2). ``reset`` answers the RSET the engine
    sends when a transaction it opened did not reach its end. ``outcomes`` is what each recipient
    should be judged by.
    """

    recipients: tuple[Recipient, ...]
    mail: Reply
    rcpts: tuple[Reply | None, ...] = ()
    data: Reply | None = None
    data_end: tuple[Reply, ...] = ()
    reset: Reply | None = None
    is_local: bool = False

    @property
    def outcomes(self) -> tuple[Reply, ...]:
        """One final reply per recipient: the first reply in MAIL → RCPT → DATA → end of data that
        refused it, or the end-of-data reply that took it (its own, under LMTP)."""
        out: list[Reply] = []
        accepted = 0
        for i in range(len(self.recipients)):
            rcpt = self.rcpts[i] if i < len(self.rcpts) else None
            if self.mail.code >= 300:
                out.append(self.mail)
            elif rcpt is None or rcpt.code >= 300:
                out.append(rcpt or _NOT_TRIED)
            elif self.data is None or self.data.code != 354:
                out.append(self.data or _NOT_TRIED)
            elif accepted < len(self.data_end):
                out.append(self.data_end[accepted])
                accepted += 1 if len(self.data_end) > 1 else 0
            else:
                out.append(_NOT_TRIED)
        return tuple(out)

    @property
    def delivered(self) -> tuple[Recipient, ...]:
        """The recipients whose outcome is a 2xx: the next hop has taken responsibility for them."""
        return tuple(r for r, reply in zip(self.recipients, self.outcomes, strict=True) if reply.code < 300)


ClientEvent = Greeting | ExtensionsKnown | CommandReply | AuthResult | TransactionResult | ConnectionClosed
