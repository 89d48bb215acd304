"""Delivery events, derived from the mail log (``observe/maillog.py``): what the HTTP API pages
through (``GET /v1/events``) and what webhooks receive.

Theory of operation. Every mail-log line passes through ``to_event`` (pure); the ones that matter to a
sender become one event each, with the names Amazon SES and SparkPost users know:

==============  ==================================  ==============================================
event           mail-log line                       SES / SparkPost
==============  ==================================  ==============================================
injection       ``queued`` (SMTP or the API)        Send / injection
delivery        ``delivery result=delivered``       Delivery / delivery
delay           ``delivery result=deferred``        DeliveryDelay / delay
bounce          ``delivery result=failed``          Bounce / bounce; ``bounce_type`` hard|soft
reject          ``reject stage=rcpt``               Reject / policy_rejection
suppression     ``suppressed``                      (SES suppression list) / (suppression)
==============  ==================================  ==============================================

One event per delivery attempt: each ``delivery`` line is one. ``bounce_type`` is ``hard`` when the
enhanced status says the address itself is bad (X.1.x: no such user, bad domain, null MX 5.1.10;
5.2.1 mailbox disabled) — such an address is worth suppressing — and ``soft`` otherwise (a full
mailbox, a policy refusal, a message too big, an expiry).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["bounce_type", "enhanced_of", "to_event"]

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_RESULT_TYPES = {"delivered": "delivery", "deferred": "delay", "failed": "bounce"}


def enhanced_of(reply: str) -> str | None:
    """The enhanced status code in a reply's text ("550 5.1.1 …" → "5.1.1"), if any."""
    match = _ENHANCED.search(reply)
    return None if match is None else ".".join(match.groups())


def bounce_type(enhanced: str | None) -> str:
    if enhanced is None:
        return "soft"
    klass, subject, detail = enhanced.split(".")
    if klass == "5" and (subject == "1" or (subject, detail) == ("2", "1")):
        return "hard"
    return "soft"


def _angle(value: object) -> str:
    return str(value).strip("<>")


def _delivery(fields: Mapping[str, object]) -> dict[str, Any] | None:
    kind = _RESULT_TYPES.get(str(fields.get("result")))
    if kind is None:
        return None
    reply = str(fields.get("reply", ""))
    enhanced = str(fields["dsn"]) if fields.get("dsn") else enhanced_of(reply)
    event: dict[str, Any] = {
        "type": kind,
        "queue_id": fields.get("id"),
        "recipient": _angle(fields.get("rcpt", "")),
        "reply": reply,
        "enhanced_status": enhanced,
        "attempt": fields.get("attempt"),
        "relay": fields.get("relay"),
        "tls": fields.get("tls"),
    }
    if kind == "bounce":
        event["bounce_type"] = bounce_type(enhanced)
    if kind == "delay":
        event["next_attempt_at"] = fields.get("next")
    return event


def to_event(name: str, fields: Mapping[str, object]) -> dict[str, Any] | None:
    """The event a mail-log line makes (without ``id`` and ``timestamp``), or None."""
    if name == "delivery":
        return _delivery(fields)
    if name == "queued":
        return {
            "type": "injection",
            "queue_id": fields.get("id"),
            "sender": _angle(fields.get("from", "")),
            "recipients": fields.get("nrcpt"),
            "size": fields.get("size"),
            "proto": fields.get("proto"),
            "user": fields.get("user"),
        }
    if name == "reject" and fields.get("stage") == "rcpt":
        reply = str(fields.get("reply", ""))
        return {
            "type": "reject",
            "sender": _angle(fields["from"]) if fields.get("from") is not None else None,
            "recipient": _angle(fields.get("rcpt", "")),
            "reply": reply,
            "enhanced_status": enhanced_of(reply),
            "check": fields.get("check"),
            "user": fields.get("user"),
        }
    if name == "suppressed":
        return {
            "type": "suppression",
            "recipient": _angle(fields.get("rcpt", "")),
            "reason": fields.get("reason"),
            "source": fields.get("source"),
            "queue_id": fields.get("id"),
        }
    return None
