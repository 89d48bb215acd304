"""Verdicts: what a policy check answers, and what a stage of the pipeline decides.

A ``Verdict`` keeps apart the two audiences of a decision: ``reply`` is what the client reads (generic,
from the catalogue), ``reason`` is what the log says (specific, never sent). The actions:

- ``accept``: nothing to object; the next check is asked.
- ``reject``: refuse now with a 5xx ``reply`` (permanent).
- ``defer``: refuse now with a 4xx ``reply`` (try again later: greylisting, a DNS time-out).
- ``tag``: accept, and add ``headers`` to the message and ``score`` to its spam score.
- ``quarantine``: accept and queue the message held, for an operator to release or delete (data stage).
- ``discard``: answer 250 but drop the message (data stage; a milter's DISCARD).

The class digit of a reply always matches its action (a defer never carries a 5xx reply).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from postier.mail.reply import Reply
from postier.policy.edits import Edit

__all__ = ["ACCEPT", "Action", "Verdict", "defer", "discard", "quarantine", "reject", "tag"]

Header = tuple[str, str]


class Action(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DEFER = "defer"
    TAG = "tag"
    QUARANTINE = "quarantine"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reply: Reply | None = None
    """What the client is told (reject, defer; optional for quarantine and discard)."""
    reason: str = ""
    """What the log says: specific, never sent to the client."""
    headers: tuple[Header, ...] = ()
    """Header fields to add to the message (tag, quarantine), in order, ``(name, value)``."""
    score: float = 0.0
    """Added to the message's spam score (tag)."""
    check: str = ""
    """The check that gave it (filled in by the pipeline)."""
    edits: tuple[Edit, ...] = ()
    """Changes to the message beyond added headers (data stage: a header changed or deleted, the body
    replaced; ``policy/edits.py``), applied in check order before the added headers go on top."""

    def __post_init__(self) -> None:
        reply = self.reply
        if self.action is Action.REJECT and (reply is None or reply.code // 100 != 5):
            raise ValueError(f"a reject needs a 5xx reply, not {reply}")
        if self.action is Action.DEFER and (reply is None or reply.code // 100 != 4):
            raise ValueError(f"a defer needs a 4xx reply, not {reply}")

    @property
    def is_refusal(self) -> bool:
        """The client is refused now (reject or defer): the stage ends here."""
        return self.action is Action.REJECT or self.action is Action.DEFER

    def with_edits(self, *edits: Edit) -> Verdict:
        """This verdict, also changing the message (a tag, quarantine or accept; an accept becomes a tag)."""
        if not edits:
            return self
        action = Action.TAG if self.action is Action.ACCEPT else self.action
        return replace(self, action=action, edits=self.edits + edits)

    def by(self, check: str) -> Verdict:
        if self.check == check:
            return self
        # Positional, not dataclasses.replace: asked for every verdict of every check (hot path).
        return Verdict(self.action, self.reply, self.reason, self.headers, self.score, check, self.edits)


ACCEPT = Verdict(Action.ACCEPT)


def reject(reply: Reply, reason: str) -> Verdict:
    return Verdict(Action.REJECT, reply, reason)


def defer(reply: Reply, reason: str) -> Verdict:
    return Verdict(Action.DEFER, reply, reason)


def tag(*headers: Header, score: float = 0.0, reason: str = "") -> Verdict:
    return Verdict(Action.TAG, None, reason, tuple(headers), score)


def quarantine(reason: str, *headers: Header) -> Verdict:
    return Verdict(Action.QUARANTINE, None, reason, tuple(headers))


def discard(reason: str) -> Verdict:
    return Verdict(Action.DISCARD, None, reason)
