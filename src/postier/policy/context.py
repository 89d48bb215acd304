"""What a check sees of the session at each stage: the client, the transaction, the message.

``Client`` is frozen: the session replaces it when it learns more (HELO, TLS, AUTH), so a check that
keeps a reference never sees it change. ``Transaction`` belongs to the session and lives from MAIL
FROM to the end of data; checks read it, and may leave results for later stages in ``notes`` (an SPF
result at MAIL for DMARC at the end of data). ``Message`` is the data as received, before the
``Received:`` header and any header a check adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.smtp.server.events import MailParams
from postier.spool import MessageBody

__all__ = ["Client", "Message", "Transaction", "drop_header_fields", "split_header"]


@dataclass(frozen=True, slots=True)
class Client:
    sid: str
    """The session id, as on every log line of the session."""
    ip: str
    port: int
    listener: str
    """The listener's mode: ``smtp``, ``submission`` or ``submissions``."""
    local: str = ""
    """The listening address, ``host:port``."""
    is_trusted: bool = False
    """The client's address is in ``relay.trusted_networks``."""
    tls: str | None = None
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384"`` under TLS, else None."""
    helo: str = ""
    esmtp: bool = False
    auth_user: str | None = None
    """The authenticated user (AUTH), else None."""

    @property
    def is_ours(self) -> bool:
        """Mail from this client is our own users' mail: trusted network or authenticated."""
        return self.is_trusted or self.auth_user is not None


@dataclass(slots=True)
class Transaction:
    sender: Address | None
    """The envelope sender; None is the null sender ``<>``."""
    params: MailParams = field(default_factory=MailParams)
    recipients: list[Recipient] = field(default_factory=list)
    """The recipients accepted so far, in order."""
    notes: dict[str, object] = field(default_factory=dict)
    """Results a check leaves for later stages, keyed by the check's name."""
    remove_headers: set[int] = field(default_factory=set)
    """Header fields the intake drops before queueing, as indices into ``Message.headers`` (data
    stage): trace fields a check found forged, e.g. Authentication-Results claiming our authserv-id
    (RFC 8601 §5). Only a data-stage check that accepts the message should add to it."""
    auth_results: str = ""
    """The mail authentication summary (``spf=pass dkim=pass:example.com dmarc=pass``), set by the
    mailauth check at the data stage; the intake writes it on the ``queued`` line and in the queue
    record (``ClientInfo.mailauth``)."""


@dataclass(frozen=True)  # no slots: the parsed header is cached on the instance
class Message:
    """The message as received: ``bytes``, or a ``MessageBody`` over a spool file when it is large
    (``server.hold_message_bytes``). ``header`` and ``headers`` never read more than the header section
    (bounded by ``server.max_header_bytes``); ``data`` and ``body`` read a spooled message whole into
    memory — a check that needs them should say so in its docs and skip very large messages."""

    content: bytes | MessageBody

    @property
    def size(self) -> int:
        return len(self.content)

    @cached_property
    def header(self) -> bytes:
        """The header section, without the blank line that ends it."""
        content = self.content
        if isinstance(content, bytes):
            return content[: split_header(content)[0]]
        return content.header_section()

    @property
    def data(self) -> bytes:
        """The whole message (a copy of a spooled one)."""
        content = self.content
        return content if isinstance(content, bytes) else content.read()

    @property
    def body(self) -> bytes:
        data = self.data
        return data[split_header(data)[1] :]

    @cached_property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields in order, ``(name, value)``, the value unfolded and stripped, decoded as
        UTF-8 with errors replaced (RFC 6532 allows UTF-8; anything else is not to be trusted)."""
        fields: list[tuple[str, str]] = []
        for line in self.header.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip().decode('utf-8', 'replace')}")
                continue
            name_b, colon, value_b = line.partition(b":")
            if colon:
                name = name_b.strip().decode("ascii", "replace")
                fields.append((name, value_b.strip().decode("utf-8", "replace")))
        return tuple(fields)

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


def split_header(data: bytes) -> tuple[int, int]:
    """``(end of the header section, start of the body)`` offsets: the first empty line ends the
    header section (RFC 5322 §2.1); a message without one is all header."""
    if data.startswith(b"\r\n"):
        return 0, 2
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data), len(data)
    return end, end + 4


def drop_header_fields(data: bytes, indices: set[int]) -> bytes:
    """``data`` without the header fields numbered ``indices`` (as ``Message.headers`` numbers them:
    lines with a colon start a field, folded lines belong to the field above, other lines are kept
    and count for nothing)."""
    end, _ = split_header(data)
    if not indices or end == 0:
        return data
    kept: list[bytes] = []
    number, dropping = -1, False
    for line in data[:end].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and number >= 0:
            if not dropping:
                kept.append(line)
            continue
        if b":" in line:
            number += 1
            dropping = number in indices
            if dropping:
                continue
        else:
            dropping = False
        kept.append(line)
    if not kept:  # no field left: the message starts with the empty line
        return data[end + 2 :]
    return b"\r\n".join(kept) + data[end:]
