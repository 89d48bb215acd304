"""``postier explain``: SMTP replies in plain English, for the person reading a log.

Theory of operation: a query is a basic reply code (``452``), an enhanced status code (``5.1.1``, or
``X.1.1`` for any class) or both (``550 5.7.1``), optionally followed by the reply text as it appeared in a
log. Each code is looked up in ``explain_data`` (basic) or ``explain_enhanced``; a well-formed code no table
knows is explained from its digits (RFC 5321 §4.2.1 for basic codes, RFC 3463 §2–3 for enhanced ones). What
a sender does next — nothing, retry later, or bounce — follows from the basic code when there is one (it is
what SMTP clients act on), else from the enhanced class. ``replies_using`` finds the replies of Postier's
own catalogue (``postier.mail.replies``) that carry a code, so the explanation can say "Postier sends this
as: …". Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from postier.mail.explain_data import BASIC, BASIC_CATEGORY, BASIC_CLASS
from postier.mail.explain_enhanced import ENHANCED, ENHANCED_SUBJECT
from postier.mail.replies import S, dnsbl_blocked, greeting, queued
from postier.mail.reply import Reply

__all__ = ["Entry", "Explanation", "explain", "group_queries", "replies_using"]

Outcome = Literal["connection", "success", "intermediate", "transient", "permanent", "unknown"]

_BASIC_RE = re.compile(r"(\d{3})(?:[ -]|$)")
_ENHANCED_RE = re.compile(r"([0-9Xx])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_ENHANCED_CLASS = {"2": "success", "4": "persistent transient failure", "5": "permanent failure"}

_OUTCOMES: dict[int, tuple[Outcome, str]] = {
    1: (
        "connection",
        "Not an SMTP reply: the connection failed before SMTP began. Senders treat it "
        "as transient: they try the next MX, then again later.",
    ),
    2: ("success", "Success: nothing to retry."),
    3: (
        "intermediate",
        "Intermediate: the server waits for the client's next input (the message "
        "data or an AUTH response); not an end result.",
    ),
    4: (
        "transient",
        "Transient: the sender keeps the message and tries again later; it bounces "
        "only after staying queued too long (Postier: its retry schedule, then a DSN).",
    ),
    5: (
        "permanent",
        "Permanent: the sender must not repeat the same request unchanged; the message "
        "bounces to its sender (a DSN, RFC 3464).",
    ),
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One code explained: ``code`` as asked (``452``, ``5.1.1``, ``X.1.1``)."""

    code: str
    meaning: str
    check: str
    source: str
    """Defining document (``RFC 5321 §4.2.3``); empty when no RFC defines the code."""
    is_known: bool = True
    """False when the code is in no table and was explained from its digits."""

    @property
    def is_rfc(self) -> bool:
        return self.source.startswith("RFC")

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "meaning": self.meaning,
            "check": self.check,
            "source": self.source,
            "defined_by_rfc": self.is_rfc,
            "known": self.is_known,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    query: str
    basic: Entry | None
    enhanced: Entry | None
    outcome: Outcome
    retry: str
    notes: tuple[str, ...] = ()
    sent_as: tuple[str, ...] = ()
    """Postier's own replies with this code: ``"TOO_MANY_RECIPIENTS — Too many recipients"``."""
    text: str = ""
    """Reply text that followed the codes in the query, as given."""
    entries: tuple[Entry, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(e for e in (self.basic, self.enhanced) if e))

    def as_dict(self) -> dict[str, object]:
        return {
            "query": self.query,
            "basic": self.basic.as_dict() if self.basic else None,
            "enhanced": self.enhanced.as_dict() if self.enhanced else None,
            "outcome": self.outcome,
            "retry": self.retry,
            "notes": list(self.notes),
            "postier_sends_as": list(self.sent_as),
            "text": self.text,
        }


def _basic_entry(code: int) -> Entry:
    row = BASIC.get(code)
    if row is not None:
        return Entry(str(code), *row)
    first, second = code // 100, (code // 10) % 10
    category = BASIC_CATEGORY.get(second, "no category defined for this second digit")
    return Entry(
        str(code),
        f"Unregistered code: {BASIC_CLASS[first]}; category {second}: {category}",
        "The reply text: the sending or receiving software chose this code itself",
        "",
        is_known=False,
    )


def _enhanced_entry(klass: str, subject: int, detail: int) -> Entry:
    code = f"{klass}.{subject}.{detail}"
    row = ENHANCED.get((subject, detail))
    if row is not None:
        return Entry(code, *row)
    topic = ENHANCED_SUBJECT.get(subject)
    if topic is None:
        meaning = f"Unregistered status: subject {subject} is not defined by RFC 3463"
        source = ""
    else:
        meaning = f"Unregistered detail {detail} under subject {subject}: {topic[0]}"
        source = topic[1]
    return Entry(code, meaning, "The reply text: this detail code is not in the IANA registry", source, False)


def _parse(query: str) -> tuple[int | None, tuple[str, int, int] | None, str]:
    """(basic, (class, subject, detail), rest); ValueError when no code starts the query."""
    rest = query.strip()
    basic: int | None = None
    enhanced: tuple[str, int, int] | None = None
    if m := _BASIC_RE.match(rest):
        basic = int(m.group(1))
        if not 1 <= basic // 100 <= 5:
            raise ValueError(f"not an SMTP reply code: {m.group(1)} (the first digit is 1 to 5)")
        rest = rest[m.end() :].lstrip()
    if m := _ENHANCED_RE.match(rest):
        klass = m.group(1).upper()
        if klass not in ("2", "4", "5", "X"):
            raise ValueError(f"enhanced status class must be 2, 4 or 5 (RFC 3463 §3.1), not {klass}")
        enhanced = (klass, int(m.group(2)), int(m.group(3)))
        rest = rest[m.end() :].strip()
    if basic is None and enhanced is None:
        raise ValueError(f"not a reply code: {query.strip()[:40]!r} (try 452, 5.1.1 or '550 5.7.1')")
    return basic, enhanced, rest


def _notes(basic: int | None, enhanced: tuple[str, int, int] | None) -> list[str]:
    notes: list[str] = []
    if basic is not None and basic not in BASIC:
        notes.append("This code is not defined by RFC 5321 or any RFC known here; read the reply text.")
    elif basic is not None and not BASIC[basic][2].startswith("RFC"):
        notes.append("Not defined by RFC 5321 or any other RFC: its meaning here is what it usually means.")
    elif basic is not None and not BASIC[basic][2].startswith("RFC 5321"):
        notes.append(f"Not defined by RFC 5321 but by {BASIC[basic][2]}.")
    if basic is None or enhanced is None:
        return notes
    klass = enhanced[0]
    if basic // 100 == 1:
        notes.append("A connection error is not an SMTP reply and carries no enhanced status code.")
    elif basic // 100 == 3:
        notes.append("Intermediate replies carry no enhanced status code (RFC 2034 §4).")
    elif klass != "X" and int(klass) != basic // 100:
        notes.append(
            f"The class digits disagree: {basic} says {_OUTCOMES[basic // 100][0]}, {klass}.x.x says "
            f"{_ENHANCED_CLASS[klass]}. RFC 3463 §2 requires them to match; senders act on the basic code."
        )
    return notes


def _reply_catalogue() -> list[tuple[str, Reply]]:
    named = [(name, value) for name, value in vars(S).items() if isinstance(value, Reply)]
    named.append(("greeting()", greeting("HOSTNAME")))
    named.append(("queued(ID)", queued("ID")))
    named.append(("dnsbl_blocked(IP, ZONE)", dnsbl_blocked("IP", "ZONE")))
    return named


def replies_using(code: int | None = None, status: str | None = None) -> list[tuple[str, Reply]]:
    """Named replies of ``postier.mail.replies`` carrying ``code`` and/or ``status``.

    ``status`` may use ``X`` as its class (``X.1.1``) to match any class. Both None: every reply.
    """
    wanted = status.upper().split(".") if status else None
    out = []
    for name, reply in _reply_catalogue():
        if code is not None and reply.code != code:
            continue
        if wanted is not None:
            if reply.status is None:
                continue
            have = str(reply.status).split(".")
            if have[1:] != wanted[1:] or (wanted[0] != "X" and have[0] != wanted[0]):
                continue
        out.append((name, reply))
    return out


def explain(query: str) -> Explanation:
    """Explain ``452``, ``5.1.1``, ``X.1.1``, ``550 5.7.1`` or a whole reply line from a log.

    Raises ValueError when the query does not start with a well-formed code.
    """
    basic, enhanced, text = _parse(query)
    basic_entry = _basic_entry(basic) if basic is not None else None
    enhanced_entry = _enhanced_entry(*enhanced) if enhanced is not None else None
    if basic is not None:
        outcome, retry = _OUTCOMES[basic // 100]
    elif enhanced is not None and enhanced[0] != "X":
        outcome, retry = _OUTCOMES[int(enhanced[0])]
    else:
        outcome, retry = "unknown", "Depends on the class: X.y.z is 2 (success), 4 (retried) or 5 (bounced)."
    status = f"{enhanced[0]}.{enhanced[1]}.{enhanced[2]}" if enhanced else None
    sent_as = tuple(f"{name} — {reply.text}" for name, reply in replies_using(basic, status))
    return Explanation(
        query=query.strip(),
        basic=basic_entry,
        enhanced=enhanced_entry,
        outcome=outcome,
        retry=retry,
        notes=tuple(_notes(basic, enhanced)),
        sent_as=sent_as,
        text=text,
    )


def _is_basic(token: str) -> bool:
    return bool(_BASIC_RE.fullmatch(token))


def _is_enhanced(token: str) -> bool:
    return bool(_ENHANCED_RE.fullmatch(token))


def group_queries(args: Sequence[str] | Iterable[str]) -> list[str]:
    """Command-line words → queries: ``["550", "5.7.1", "452"]`` → ``["550 5.7.1", "452"]``.

    An argument with spaces (a quoted log line) is one query. ValueError names the first word that
    is not a code.
    """
    queries: list[str] = []
    pending_basic = False
    for arg in args:
        word = arg.strip()
        if " " in word:
            queries.append(word)
            pending_basic = False
        elif _is_enhanced(word) and pending_basic:
            queries[-1] = f"{queries[-1]} {word}"
            pending_basic = False
        elif _is_basic(word) or _is_enhanced(word):
            queries.append(word)
            # RFC 2034 §4: only 2xx/4xx/5xx replies carry an enhanced status after them.
            pending_basic = _is_basic(word) and word[0] in "245"
        else:
            raise ValueError(f"not a reply code: {word[:40]!r} (try 452, 5.1.1 or '550 5.7.1')")
    return queries
