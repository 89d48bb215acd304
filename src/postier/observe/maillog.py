"""The mail log: one line per mail event, with the session id and the queue id.

Theory of operation: what happened to a message is told by a fixed set of events written on the
``postier.mail`` logger. Each line starts with ``event``, then ``sid`` (the SMTP session id) and ``id``
(the queue id) when known, then the other fields in the order the caller gave them. Field names and
event names are a public interface for people who grep logs: add fields, never rename them.
A keyword that clashes with Python (``from``) is passed with a trailing underscore (``from_=``) and
logged without it. ``None`` values are left out. (Model: chasquid ``internal/maillog``; Postfix's
``status=sent (250 …)`` lines.)

Events and the fields they are written with (in that order; ``?``: only when it applies). With
``[server] workers`` above 1 every line also carries ``worker`` (the process index, ``logs.set_worker``).

=============  ==============================================================================
connect        sid, remote (ip:port), listener (smtp|submission|submissions), local (ip:port)
helo           sid, name (as the client gave it), verb (HELO|EHLO)
tls            sid, version (TLSv1.3), cipher — or, when the handshake fails: sid, result=failed,
               error (the exception's class name)
auth           sid, mechanism, user?, result (ok|failed|locked|authzid) — never the password or payload
reject         sid (absent when refused before a session began), remote? (connect stage), stage
               (connect|helo|auth|mail|rcpt|data|…: the command), from? (mail), rcpt? (rcpt), user?
               (a sender rule or a rate limit), reply ("550 5.1.1 …"), check? (the policy check that
               refused: relay, recipient, rate, loop, admission, a user check …), reason?
verdict        sid, id? (data stage), stage, check, action (tag|quarantine|discard|accept), reason?,
               score? — a check's word that did not refuse the client (a header added, a message held
               or dropped, a check skipped after a failure)
queued         sid, id, from (<sender>, ``<>`` for bounces), size (octets), nrcpt, proto
               (the RFC 3848 "with" keyword: SMTP, ESMTPSA, UTF8SMTPS …), user?, duration_s (MAIL to
               queued), held? (quarantined by a check), dkim? (the signing domain, or unsigned),
               dkim_reason?, mailauth? (what mail authentication found: "spf=pass
               dkim=pass:example.com dmarc=pass arc=none"), arc? (sealed: an ARC set was added, the
               message being forwarded by an alias)
delivery       id, rcpt, result (delivered|deferred|failed), relay (the server "host [ip]:port", or
               the destination), tls?, tls_policy, source (where the policy came from), reply,
               attempt, next? (the next attempt, deferred only), delay_s (time in queue), duration_s?
               (the attempt itself), dsn? (the reply's enhanced status)
bounce         id, rcpt, action (failed|delayed|delivered|relayed), then either to (the DSN's
               recipient), bounce_id (queue id of the DSN), reason? (double bounce), reply?; or
               result (withheld|dropped), reason, reply?
expired        id, rcpt, age_s (time in queue), last_reply
removed        reserved: not written yet (``postier queue delete`` logs nothing here)
disconnect     sid, remote, commands (count), duration_s, reason (quit|timeout|error|shutdown|closed)
ready          listeners ("smtp=127.0.0.1:2525 submission=…"), hostname — the server accepts mail
stopped        (no fields) — the server has shut down
dmarc_report   id (of the report message queued), domain (the policy domain), to (<rua address>), rows
suppressed     rcpt (<address>), reason (hard-bounce|manual|unsubscribe), source? (the reply, or who),
               id? (the message whose bounce suppressed it), until? (expiry) — added to the suppression list
=============  ==============================================================================

Never pass passwords, AUTH payloads, keys or message bodies as fields.

Subscribers (``subscribe(fn)``) see every event with its ordered fields, whatever the log level: the
metrics are derived from them (``observe/metrics.py``). With none subscribed the cost is one test of
an empty tuple. A subscriber must be quick and must not raise; if it does, the error is logged and
the event still counts as written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

from postier.observe.logs import FIELDS_ATTR

__all__ = ["EVENTS", "MAIL_LOGGER", "Subscriber", "mail_event", "subscribe"]

Subscriber = Callable[[str, Mapping[str, object]], None]

MAIL_LOGGER = "postier.mail"

EVENTS = frozenset(
    {
        "connect",
        "helo",
        "tls",
        "auth",
        "reject",
        "verdict",
        "queued",
        "delivery",
        "bounce",
        "expired",
        "removed",
        "disconnect",
        "ready",
        "stopped",
        "dmarc_report",
        "suppressed",
    }
)

_LEADING = ("sid", "id")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*")
_log = logging.getLogger(MAIL_LOGGER)
_names: dict[str, str] = {}
_subscribers: tuple[Subscriber, ...] = ()


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Call ``subscriber(event, fields)`` for every mail event from now on; returns the unsubscribe."""
    global _subscribers
    _subscribers = (*_subscribers, subscriber)

    def unsubscribe() -> None:
        global _subscribers
        _subscribers = tuple(s for s in _subscribers if s is not subscriber)

    return unsubscribe


def _field_name(key: str) -> str:
    """The logged name of a keyword (trailing ``_`` dropped), checked once per keyword and then
    remembered: callers use a fixed set of keywords, so the cache stays small."""
    name = _names.get(key)
    if name is None:
        name = key[:-1] if key.endswith("_") else key
        if not _FIELD_NAME.fullmatch(name) or name in ("event", "ts", "level"):
            raise ValueError(f"bad mail log field name: {key!r}")
        _names[key] = name
    return name


def _field_order(event: str, given: dict[str, object]) -> dict[str, object]:
    """``event``, ``sid``, ``id`` first, then the rest as given; trailing ``_`` dropped."""
    ordered: dict[str, object] = {"event": event}
    for key in _LEADING:
        if key in given:
            ordered[key] = given[key]
    names = _names
    for key, value in given.items():
        name = names.get(key) or _field_name(key)
        if name not in ordered:
            ordered[name] = value
    return ordered


def mail_event(event: str, /, **fields: object) -> None:
    """Write one mail-event line, e.g. ``mail_event("queued", sid=sid, id=qid, from_="<a@b>", size=312)``.

    Raises ValueError for an event name outside ``EVENTS`` or a malformed field name: both are
    programming errors that the tests catch, and the fixed vocabulary is what keeps the log greppable.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown mail event: {event!r}")
    if not _subscribers and not _log.isEnabledFor(logging.INFO):
        for key in fields:  # nobody reads it; the names are still checked (a programming error)
            if key not in _names:
                _field_name(key)
        return
    ordered = _field_order(event, fields)
    if _log.isEnabledFor(logging.INFO):
        # What Logger.info does, without looking up the caller's file and line (never logged).
        record = logging.getLogRecordFactory()(MAIL_LOGGER, logging.INFO, "", 0, event, None, None)
        setattr(record, FIELDS_ATTR, ordered)
        _log.handle(record)
    for subscriber in _subscribers:
        try:
            subscriber(event, ordered)
        except Exception:
            logging.getLogger("postier.observe").exception("mail event subscriber failed on %s", event)
