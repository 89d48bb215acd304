"""Which outbound replies end an attempt for a recipient, and which send it to the next host.

Theory of operation (after Postfix ``smtp_trouble.c``, STYLE.md habit 5). Every reply has a scope:

- *recipient*: the reply is about this recipient alone and is final for this attempt — any 2xx, a
  RCPT reply (4xx or 5xx), an LMTP per-recipient end-of-data reply (RFC 2033 §4.2), and the engine's
  own message checks (SIZE 5.3.4, SMTPUTF8 5.6.7, 8BITMIME 5.6.3).
- *message*: a 5xx to MAIL, to DATA or to the end of data refuses the message for every recipient
  it covers: final.
- *site*: the host could not take the message now — a 4xx to MAIL, to DATA or to the SMTP end of
  data, any 421 (the session ended), the connection lost or timed out, a refused or unanswered
  connection, a refused greeting, failed TLS or AUTH. The recipient goes on to the next address, then
  the next host; its reply is kept in case no host takes it.

``AttemptBook`` holds one batch's results. When no host took a recipient, it gets the most telling
site failure seen: a reply a server gave beats one Postier made up (a 451 from the primary MX says
more than "connection refused" from the backup), and among Postier's own, a temporary one beats a
permanent one (a backup MX that exists but is down must defer, not bounce, the mail); the latest
wins among equals.
"""

from __future__ import annotations

from collections.abc import Sequence

from postier.delivery.transport import Attempt
from postier.mail.envelope import Recipient
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.client.events import TransactionResult

__all__ = ["NO_HOSTS", "AttemptBook", "classify", "is_site_failure"]

NO_HOSTS = Reply(451, EnhancedStatus(4, 4, 4), "No host to deliver to")


def classify(result: TransactionResult, *, lmtp: bool) -> list[tuple[Reply, bool]]:
    """Each recipient's reply and its scope: True for a site failure (try the next host), False for
    a final reply of this attempt. (What the final reply then means for the queue — delivered,
    deferred, failed — is ``outcomes.judge``.)"""
    out: list[tuple[Reply, bool]] = []
    for i, reply in enumerate(result.outcomes):
        rcpt = result.rcpts[i] if i < len(result.rcpts) else None
        out.append((reply, is_site_failure(result, reply, rcpt, lmtp=lmtp)))
    return out


def is_site_failure(result: TransactionResult, reply: Reply, rcpt: Reply | None, *, lmtp: bool) -> bool:
    if reply.code < 400 or reply.code >= 500 or result.is_local:
        return False
    if reply.code == 421 or result.mail.code >= 300:
        return True  # the session ended, or MAIL was deferred
    if rcpt is not None and rcpt.code >= 300:
        return False  # RCPT 4xx: this recipient, this time
    data_ok = result.data is not None and result.data.code == 354
    return not (lmtp and data_ok)  # DATA 4xx, SMTP end-of-data 4xx: site; LMTP's own reply: final


class AttemptBook:
    """The results of one batch: final attempts, and the best site failure of each pending one."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self.recipients = tuple(recipients)
        self._final: list[Attempt | None] = [None] * len(self.recipients)
        self._fallback: list[Attempt | None] = [None] * len(self.recipients)

    @property
    def pending(self) -> list[int]:
        """Indexes of recipients no host has given a final reply for."""
        return [i for i, a in enumerate(self._final) if a is None]

    @property
    def is_done(self) -> bool:
        return all(a is not None for a in self._final)

    def final(self, index: int, attempt: Attempt) -> None:
        self._final[index] = attempt

    def site_failure(self, attempt: Attempt, indexes: Sequence[int] | None = None) -> None:
        """``attempt`` (its recipient is replaced) for every pending recipient, or for ``indexes``."""
        for i in self.pending if indexes is None else indexes:
            old = self._fallback[i]
            if old is None or _rank(attempt) >= _rank(old):
                self._fallback[i] = _for(attempt, self.recipients[i])

    def attempts(self) -> list[Attempt]:
        """One attempt per recipient, in order."""
        out = []
        for i, recipient in enumerate(self.recipients):
            attempt = self._final[i] or self._fallback[i] or Attempt(recipient, NO_HOSTS)
            out.append(attempt)
        return out


def _rank(attempt: Attempt) -> int:
    if attempt.remote_mta is not None:
        return 2
    return 1 if attempt.reply.code < 500 else 0


def _for(attempt: Attempt, recipient: Recipient) -> Attempt:
    if attempt.recipient == recipient:
        return attempt
    return Attempt(recipient, attempt.reply, attempt.remote_mta, attempt.tls, attempt.dsn_relayed)
