"""Writing one message into a Maildir (https://cr.yp.to/proto/maildir.html), crash-safe.

Theory of operation: the message is written under ``tmp/`` with a name unique on this host,
fsync'd, renamed into ``new/`` and then ``new/`` itself is fsync'd, so that once this returns
the file survives a power cut — only then may the queue record the recipient as delivered
(architecture.md, "250 means durable"). A crash before the rename leaves a stray file in
``tmp/`` that readers ignore (Maildir readers clean ``tmp/`` files older than 36 hours).

Layout: ``<root>/<domain key>/<mailbox>/{tmp,new,cur}``, created on demand with mode 0700. The
domain key is the A-label, lowercased domain (``Address.domain_key``); the mailbox is the local
part, lowercased, unquoted and made safe for a path (no ``/``, no NUL, no leading ``.``).

Bytes: ``Return-Path:`` and ``Delivered-To:`` header lines (RFC 5321 §4.4: the final delivery
adds Return-Path) come first, then the body exactly as queued. Lines keep the CRLF they arrived
with and the added headers use CRLF too, so a file never mixes line endings; Dovecot and mutt
read CRLF and LF files alike, and exact bytes mean a DKIM signature still verifies.

Disk errors (ENOSPC, EACCES, EIO …) are raised as ``OSError``: the caller turns them into a
deferral, never a loss.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from postier.mail.address import Address

__all__ = ["deliver_to_maildir", "mailbox_name", "unique_name"]

_MODE_DIR = 0o700
_MODE_FILE = 0o600
_counter = itertools.count(1)  # the Q<n> part: deliveries made by this process


def mailbox_name(local_part: str) -> str:
    """A local part as a directory name: unquoted, lowercased, with ``/`` and NUL replaced by
    ``_`` and leading dots replaced by ``_`` (no ``.``, ``..`` or hidden directories)."""
    name = local_part
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = _unescape(name[1:-1])
    name = name.lower().replace("/", "_").replace("\0", "_")
    stripped = name.lstrip(".")
    name = "_" * (len(name) - len(stripped)) + stripped
    return name or "_"


def _unescape(quoted_inner: str) -> str:
    """RFC 5321 §4.1.2 quoted-pairSMTP: a backslash quotes the next character."""
    out: list[str] = []
    escaped = False
    for char in quoted_inner:
        if char == "\\" and not escaped:
            escaped = True
            continue
        out.append(char)
        escaped = False
    return "".join(out)


def _safe_host(hostname: str) -> str:
    # Maildir: "/" and ":" in the host part are written as \057 and \072.
    return hostname.replace("/", "\\057").replace(":", "\\072") or "localhost"


def unique_name(now: datetime, hostname: str, *, extra: str = "") -> str:
    """``<time>.M<usec>P<pid>Q<counter>[R<extra>].<host>`` (the Maildir unique-name scheme)."""
    stamp = now.timestamp()
    seconds = int(stamp)
    usec = now.microsecond
    count = next(_counter)
    tail = f"R{extra}" if extra else ""
    return f"{seconds}.M{usec}P{os.getpid()}Q{count}{tail}.{_safe_host(hostname)}"


def _make_dirs(mailbox: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (mailbox / sub).mkdir(mode=_MODE_DIR, parents=True, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_unique(
    tmp: Path, clock: Callable[[], datetime], rng: random.Random, hostname: str
) -> tuple[int, str]:
    """Create a new file under ``tmp/`` with O_EXCL; on a clash (a clock step back, a reused pid)
    add random bits and try again."""
    extra = ""
    for _ in range(8):
        name = unique_name(clock(), hostname, extra=extra)
        try:
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE_FILE)
        except FileExistsError:
            extra = f"{rng.getrandbits(32):08x}"
            continue
        return fd, name
    raise FileExistsError(f"no unique Maildir name under {tmp}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def deliver_to_maildir(
    root: Path,
    address: Address,
    body: bytes,
    *,
    return_path: str,
    hostname: str,
    clock: Callable[[], datetime],
    rng: random.Random,
) -> Path:
    """Store ``body`` for ``address`` under ``root``; return the file's path in ``new/``.

    ``return_path`` is the envelope sender without brackets ("" for the null sender ``<>``).
    Durable when this returns; raises OSError on any disk error."""
    domain = mailbox_name(address.domain_key) if address.domain else "_"
    mailbox = root / domain / mailbox_name(address.local_part)
    _make_dirs(mailbox)
    header = f"Return-Path: <{return_path}>\r\nDelivered-To: <{address}>\r\n"
    fd, name = _open_unique(mailbox / "tmp", clock, rng, hostname)
    tmp_path = mailbox / "tmp" / name
    try:
        try:
            _write_all(fd, header.encode("utf-8") + body)
            os.fsync(fd)
        finally:
            os.close(fd)
        final = mailbox / "new" / name
        os.rename(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _fsync_dir(mailbox / "new")
    return final
