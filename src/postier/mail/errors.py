"""The error tree. Expected results are values (Reply, Outcome, Verdict); exceptions mean an
operation cannot go on.

    PostierError
     ├── RemoteProtocolError   the peer misbehaved; carries the Reply to send it
     ├── AddressError          an address does not parse; carries the Reply (501/553 …)
     ├── ConfigError           invalid configuration; carries the key path
     ├── QueueError            the queue cannot store or change a message
     │    ├── QueueFullError   out of disk space (→ 452 4.3.1)
     │    ├── UnknownMessageError  no message with that id
     │    └── DamagedBodyError  a stored body cannot be read back (hash mismatch, missing segment)
     └── DeliveryError         delivery cannot go on (not a per-recipient outcome)
"""

from __future__ import annotations

from postier.mail.reply import Reply

__all__ = [
    "AddressError",
    "ConfigError",
    "DamagedBodyError",
    "DeliveryError",
    "PostierError",
    "QueueError",
    "QueueFullError",
    "RemoteProtocolError",
    "UnknownMessageError",
]


class PostierError(Exception):
    """Base of every error Postier raises on purpose."""


class RemoteProtocolError(PostierError):
    """The peer broke the protocol; ``reply`` is what to answer it."""

    def __init__(self, reply: Reply, *, close: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.close = close


class AddressError(PostierError):
    """An address or domain does not parse; ``reply`` says why in SMTP terms."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class ConfigError(PostierError):
    """The configuration is invalid; ``path`` names the key, e.g. ``listener[0].mode``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class QueueError(PostierError):
    """The queue could not do what was asked; nothing half-done is visible."""


class QueueFullError(QueueError):
    """The store is out of space."""


class UnknownMessageError(QueueError):
    """No message has this queue id."""


class DamagedBodyError(QueueError):
    """A message is in the queue but its body cannot be read back as it was stored: its hash does not
    match, its body-log segment is missing or short. Retrying may not help (delivery bounces it after
    one retry), unlike a ``QueueError`` of the store as a whole."""


class DeliveryError(PostierError):
    """Delivery as a whole cannot go on (per-recipient results are Outcome values)."""
