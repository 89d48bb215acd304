"""Envelope ↔ stored columns, and times ↔ stored numbers.

The envelope is kept as one JSON text (every DSN parameter, the client's IP, HELO, TLS and
authenticated user), minus the recipients, which get one row each so their state can change on its
own. Times are stored as seconds since the epoch (a float: portable to PostgreSQL's double precision)
and handed out as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import msgspec

from postier.mail.address import Address
from postier.mail.envelope import BodyType, ClientInfo, Envelope, Notify, Recipient, Ret
from postier.queue.model import MessageStatus, MessageSummary, QueueId, RecipientState

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
"""msgspec's JSON for the envelope column: the same text as ``json`` (compact, UTF-8 unescaped), a few
microseconds less per message each way."""

__all__ = [
    "SUMMARY_RECIPIENT_COLUMNS",
    "decode_envelope",
    "decode_recipient",
    "encode_envelope",
    "encode_recipient",
    "from_epoch",
    "opt_epoch",
    "recipient_domain",
    "summarize",
    "to_epoch",
]

_CLIENT_FIELDS = tuple(f.name for f in fields(ClientInfo))  # flat values: no need for asdict's deep copy

RecipientRow = tuple[str, str, str, str | None, str | None]
"""local_part, domain as received, routing domain, NOTIFY (comma-separated) or None, ORCPT or None."""


def to_epoch(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("queue times are aware datetimes")
    return at.timestamp()


def opt_epoch(at: datetime | None) -> float | None:
    return None if at is None else to_epoch(at)


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def encode_envelope(envelope: Envelope) -> str:
    sender = envelope.sender
    data: dict[str, Any] = {
        "sender": None if sender is None else [sender.local_part, sender.domain],
        "body": envelope.body.value,
        "smtputf8": envelope.smtputf8,
        "ret": None if envelope.ret is None else envelope.ret.value,
        "envid": envelope.envid,
        "declared_size": envelope.declared_size,
        "requiretls": envelope.requiretls,
        "client": {name: getattr(envelope.client, name) for name in _CLIENT_FIELDS},
    }
    return _json_encode(data).decode("utf-8")  # compact, UTF-8 as is: what json.dumps wrote before


def decode_envelope(text: str, recipients: tuple[Recipient, ...]) -> Envelope:
    data = _json_decode(text)
    sender = None if data["sender"] is None else Address(*data["sender"])
    return Envelope(
        sender=sender,
        recipients=recipients,
        body=BodyType(data["body"]),
        smtputf8=bool(data["smtputf8"]),
        ret=None if data["ret"] is None else Ret(data["ret"]),
        envid=data["envid"],
        declared_size=data["declared_size"],
        client=ClientInfo(**data["client"]),
        requiretls=bool(data.get("requiretls", False)),
    )


def recipient_domain(address: Address) -> str:
    """The routing key of a recipient's domain (IDNA A-label, lowercase)."""
    try:
        return address.domain_key
    except ValueError:  # not a valid IDN: still route (and fail) on its lowercased form
        return address.domain.rstrip(".").lower()


def encode_recipient(recipient: Recipient) -> RecipientRow:
    notify = None
    if recipient.notify is not None:
        notify = ",".join(sorted(n.value for n in recipient.notify))
    address = recipient.address
    return (address.local_part, address.domain, recipient_domain(address), notify, recipient.orcpt)


def decode_recipient(local_part: str, domain: str, notify: str | None, orcpt: str | None) -> Recipient:
    keywords = None
    if notify is not None:
        keywords = frozenset(Notify(n) for n in notify.split(",") if n)
    return Recipient(Address(local_part, domain), keywords, orcpt)


SUMMARY_RECIPIENT_COLUMNS = "domain_key, state, attempts, next_attempt_at, last_attempt_at, last_reply"
"""The recipients' columns ``summarize`` reads, in this order (both backends select them so)."""


def summarize(row: Sequence[Any], recipients: Sequence[Sequence[Any]]) -> MessageSummary:
    """A ``MessageSummary`` from a message's ``(id, status, arrived_at, sender, size)`` row and its
    recipients' ``SUMMARY_RECIPIENT_COLUMNS`` rows, in index order."""
    qid, status, arrived, sender, size = row
    pending = [r for r in recipients if not RecipientState(r[1]).is_final]
    due = [r[3] for r in pending if r[3] is not None]
    replied = [r for r in recipients if r[4] is not None and r[5] is not None]
    return MessageSummary(
        id=QueueId(qid),
        status=MessageStatus(status),
        arrived_at=datetime.fromtimestamp(arrived, UTC),
        sender=sender,
        size=size,
        recipients=len(recipients),
        pending=len(pending),
        domains=tuple(dict.fromkeys(r[0] for r in recipients)),
        attempts=max((r[2] for r in recipients), default=0),
        next_attempt_at=from_epoch(min(due)) if due else None,
        last_reply=max(replied, key=lambda r: r[4])[5] if replied else None,
    )
