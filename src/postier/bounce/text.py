"""The human-readable part of a bounce (RFC 3464 §2.1 "first component"): plain English saying what
failed, why, and what the sender can do. Also the header-field helpers the other parts share."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from postier.bounce.report import Action, RecipientReport

__all__ = ["MAX_LINE", "field", "human_text", "rfc5322_date", "subject_for"]

MAX_LINE = 998  # RFC 5322 §2.1.1: at most 998 characters per line, excluding CRLF
_FOLD_AT = 78  # RFC 5322 §2.1.1: SHOULD be no more than 78
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def field(name: str, value: str) -> str:
    """``Name: value`` folded at spaces to about 78 characters (RFC 5322 §2.2.3), never above 998;
    controls (CR, LF …) become spaces so that no value can inject a field. Lines joined by CRLF."""
    words = _CONTROL.sub(" ", value).split()
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        word = word[: MAX_LINE - len(name) - 3]
        if len(line) + 1 + len(word) > _FOLD_AT and line.strip() and line != f"{name}:":
            lines.append(line)
            line = ""
        line = f"{line} {word}"
    lines.append(line)
    return "\r\n".join(lines)


def rfc5322_date(moment: datetime) -> str:
    """RFC 5322 §3.3 date-time; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment)


def subject_for(reports: Sequence[RecipientReport]) -> str:
    actions = {r.action for r in reports}
    if Action.FAILED in actions:
        return "Undelivered Mail Returned to Sender"
    if Action.DELAYED in actions:
        return "Delivery Status Notification (Delay)"
    return "Delivery Status Notification (Success)"


_INTRO = {
    Action.FAILED: "Your message could not be delivered to the recipients below. This is a permanent "
    "error: the mail system has given up and will not try again.",
    Action.DELAYED: "Your message has not been delivered yet to the recipients below. This is only a "
    "warning: the mail system keeps trying, and you do not need to send the message again.",
    Action.DELIVERED: "Your message was delivered to the recipients below.",
    Action.RELAYED: "Your message was passed on to the recipients' mail systems below; they do not "
    "send delivery notifications, so this is the last report you will get for them.",
    Action.EXPANDED: "Your message was delivered to the recipients below, which are mailing lists or "
    "aliases; they passed it on to their own members.",
}

# RFC 3463 subject digits → advice to the sender.
_ADVICE = {
    1: "Check the recipient's address for typing mistakes, or ask the recipient for a correct address.",
    2: "The recipient's mailbox cannot take the message (it may be full or disabled). Try again later "
    "or reach the recipient another way.",
    3: "The receiving system could not handle this message (it may be too large). Try sending it "
    "smaller, for example without big attachments.",
    4: "The recipient's domain or its mail servers could not be reached or do not accept mail. Check "
    "the domain name; if it is right, the problem lies with the recipient's mail provider.",
    5: "The mail systems did not understand each other. If this happens again, forward this report to "
    "your postmaster.",
    6: "The message's content or format was not acceptable to the receiving system.",
    7: "The receiving system refused the message for security or policy reasons. The text of its "
    "reply above may say why; the recipient's postmaster can tell you more.",
}


def human_text(reports: Sequence[RecipientReport], reporting_mta: str, now: datetime) -> str:
    """The plain-English explanation, lines joined by CRLF, each at most 76 characters or so."""
    paragraphs = [f"This is the mail system at {reporting_mta}, reporting on {rfc5322_date(now)}."]
    for action in Action:
        group = [r for r in reports if r.action is action]
        if not group:
            continue
        paragraphs.append(_INTRO[action])
        paragraphs.extend(_describe(report) for report in group)
        if action is Action.FAILED:
            subjects = sorted({r.effective_status.subject for r in group})
            paragraphs.extend(_ADVICE[s] for s in subjects if s in _ADVICE)
    paragraphs.append(
        "The technical details are in the delivery report attached to this message, followed by "
        "your original message or its headers."
    )
    lines: list[str] = []
    for paragraph in paragraphs:
        lines.extend(textwrap.wrap(paragraph, 76, break_long_words=True, break_on_hyphens=False) or [""])
        lines.append("")
    return "\r\n".join(lines)


def _describe(report: RecipientReport) -> str:
    who = f"<{report.recipient.address}>"
    if report.reply is None:
        return f"{who}: {report.action.value} (status {report.effective_status})."
    said = " ".join(str(report.reply).split())
    if report.remote_mta:
        text = f'{who}: the mail server {report.remote_mta} answered "{said}".'
    else:
        text = f'{who}: "{said}".'
    if report.action is Action.DELAYED and report.will_retry_until is not None:
        text += f" Delivery will be tried until {rfc5322_date(report.will_retry_until)}."
    return text
