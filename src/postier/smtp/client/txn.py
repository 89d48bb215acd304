"""The state of one client mail transaction: which reply answers what, and what each step got.

Kept apart from ``connection`` so the engine reads as the dialogue and this as the bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

from postier.mail.envelope import Recipient
from postier.mail.reply import Reply
from postier.smtp.client.events import TransactionResult
from postier.smtp.client.message import Message

__all__ = ["TXN_KINDS", "Kind", "Transaction", "fill", "next_unpipelined"]


class Kind(Enum):
    """What an awaited reply answers."""

    GREETING = auto()
    EHLO = auto()
    HELO = auto()
    STARTTLS = auto()
    AUTH = auto()
    RSET = auto()
    NOOP = auto()
    QUIT = auto()
    MAIL = auto()
    RCPT = auto()
    DATA = auto()
    DATA_END = auto()
    TXN_RSET = auto()


TXN_KINDS = frozenset({Kind.MAIL, Kind.RCPT, Kind.DATA, Kind.DATA_END, Kind.TXN_RSET})


@dataclass(slots=True)
class Transaction:
    recipients: tuple[Recipient, ...]
    message: Message
    commands: list[bytes]  # MAIL, every RCPT, DATA
    is_pipelined: bool
    mail: Reply | None = None
    rcpts: list[Reply | None] = field(default_factory=list)
    data: Reply | None = None
    data_end: list[Reply] = field(default_factory=list)
    reset: Reply | None = None

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.rcpts if r is not None and r.code < 300)

    def result(self) -> TransactionResult:
        assert self.mail is not None
        return TransactionResult(
            self.recipients,
            self.mail,
            tuple(self.rcpts),
            self.data,
            tuple(self.data_end),
            self.reset,
        )


def fill(txn: Transaction, reply: Reply, kinds: list[Kind], *, lmtp: bool) -> Transaction:
    """Give ``reply`` to every step of ``txn`` that was awaiting one (or would have been sent)."""
    if txn.mail is None:
        txn.mail = reply
    if txn.mail.code >= 300:
        return txn
    txn.rcpts += [reply] * (len(txn.recipients) - len(txn.rcpts))
    accepted = txn.accepted
    if accepted and txn.data is None:
        txn.data = reply
    elif txn.data is not None and txn.data.code == 354:
        awaited = accepted if lmtp and accepted else 1
        txn.data_end += [reply] * (awaited - len(txn.data_end))
    if Kind.TXN_RSET in kinds:
        txn.reset = reply
    return txn


def next_unpipelined(txn: Transaction) -> tuple[Kind, bytes] | None:
    """Without PIPELINING, once MAIL is accepted or a RCPT answered: the next RCPT, then DATA if a
    recipient was accepted; None when none was (the transaction is reset)."""
    sent = 1 + len(txn.rcpts)
    if sent <= len(txn.recipients):
        return Kind.RCPT, txn.commands[sent]
    if txn.accepted:
        return Kind.DATA, txn.commands[-1]
    return None
