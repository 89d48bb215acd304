"""The ``Check`` protocol: one small object per concern, asked at the stages it cares about.

A check implements any of the stage methods below, plainly or as ``async def`` (for DNS and other
network questions), and returns a ``Verdict``. It has a ``name`` (used in the log and the metrics) and
may say what happens when it cannot answer in time or fails (``on_failure``): ``"defer"`` (the default:
the client is told to try again later) or ``"accept"`` (the check is skipped).

Checks are given read-only views (``policy.context``) and must not keep per-session state on
themselves: one check object serves every session of a configuration. Per-transaction results go in
``Transaction.notes``.

User checks are ordinary classes loaded from a dotted path (``[[check]] module = "pkg.mod:Class"``,
``policy/hooks.py``), constructed with their options table as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Awaitable
from enum import StrEnum
from typing import Literal, Protocol

from postier.mail.envelope import Recipient
from postier.policy.context import Client, Message, Transaction
from postier.policy.verdict import Verdict

__all__ = ["Check", "FailureMode", "Stage", "StageResult"]

FailureMode = Literal["defer", "accept"]
StageResult = Verdict | Awaitable[Verdict]


class Stage(StrEnum):
    """The stages, in the order a session meets them; the method a check implements for each."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"

    @property
    def method(self) -> str:
        return f"on_{self.value}"


class Check(Protocol):
    """Implement any subset of the ``on_*`` methods (a missing one means "no opinion")."""

    name: str

    # The stage methods, for reference (a check defines only those it needs; sync or async):
    #   def on_connect(self, client: Client) -> Verdict
    #   def on_helo(self, client: Client, name: str) -> Verdict
    #   def on_mail(self, client: Client, txn: Transaction) -> Verdict
    #   def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict
    #   def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict


class _AllStages(Protocol):  # the full signatures, for the type checker and the docs
    def on_connect(self, client: Client) -> StageResult: ...
    def on_helo(self, client: Client, name: str) -> StageResult: ...
    def on_mail(self, client: Client, txn: Transaction) -> StageResult: ...
    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> StageResult: ...
    def on_data(self, client: Client, txn: Transaction, message: Message) -> StageResult: ...
