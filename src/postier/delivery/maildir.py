"""Writing one message into a Maildir (https://cr.yp.to/proto/maildir.html), crash-safe.

Theory of operation: the message is written under ``tmp/`` with a name unique on this host,
fsync'd, renamed into ``new/`` and then ``new/`` itself is fsync'd, so that once this returns
the file survives a power cut — only then may the queue record the recipient as delivered
(architecture.md, "250 means durable"). A crash before the rename leaves a stray file in
``tmp/`` that readers ignore (Maildir readers clean ``tmp/`` files older than 36 hours).

Layout: the caller names the Maildir (``LocalDirectory.maildir_for``: ``local.mailbox_path``, by
default ``<data_dir>/mail/<domain key>/<mailbox>``); ``tmp/``, ``new/`` and ``cur/`` are created on
demand with mode 0700, and the parent of every directory made is fsync'd too, so a new mailbox
does not vanish in a power cut with the message that made it.

Quota: with ``quota_bytes`` > 0 the size of the mail already in ``new/`` and ``cur/`` plus this
message (with its added headers) must fit, else ``MailboxFullError`` (→ ``552 5.2.2``) and nothing
is written. Two deliveries racing for the last bytes may both fit: the quota is a limit on growth,
not an exact ceiling. ``mailbox_size`` is the same sum, for the RCPT-time check.

Bytes: ``Return-Path: <sender>`` and ``Delivered-To: mailbox`` (a bare address, as qmail, Postfix
and Dovecot write it) come first (RFC 5321 §4.4: the final delivery adds Return-Path), then the
body exactly as queued. Lines keep the CRLF they arrived with and the added headers use CRLF too,
so a file never mixes line endings; Dovecot and mutt read CRLF and LF files alike, and exact bytes
mean a DKIM signature still verifies.

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

from postier.mail.errors import DeliveryError
from postier.recipients.mailbox import mailbox_name
from postier.safeio import fsync_dir, write_all

__all__ = ["MailboxFullError", "deliver_to_maildir", "mailbox_name", "mailbox_size", "unique_name"]

_MODE_DIR = 0o700
_MODE_FILE = 0o600
_counter = itertools.count(1)  # the Q<n> part: deliveries made by this process


class MailboxFullError(DeliveryError):
    """The message does not fit in the mailbox's quota (RFC 3463 X.2.2)."""

    def __init__(self, maildir: Path, size: int, quota_bytes: int) -> None:
        super().__init__(f"{maildir}: {size} octets would exceed the quota of {quota_bytes}")
        self.size = size
        self.quota_bytes = quota_bytes


def mailbox_size(maildir: Path) -> int:
    """Octets of mail in ``new/`` and ``cur/`` (0 for a Maildir that does not exist yet)."""
    total = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # moved or deleted by a reader meanwhile
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


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


def _make_dirs(mailbox: Path, sync_dir: Callable[[Path], None]) -> None:
    """Create ``tmp/ new/ cur/`` and any missing directory above them; then fsync the parent of each
    directory made, since a new directory entry is durable only once its parent is synced."""
    parents: set[Path] = set()
    for sub in ("tmp", "new", "cur"):
        missing: list[Path] = []
        path = mailbox / sub
        while not path.is_dir():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=_MODE_DIR)
            except FileExistsError:  # made meanwhile by a concurrent delivery, which syncs it
                continue
            parents.add(directory.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        sync_dir(parent)


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


def deliver_to_maildir(
    maildir: Path,
    body: bytes,
    *,
    return_path: str,
    delivered_to: str,
    hostname: str,
    clock: Callable[[], datetime],
    rng: random.Random,
    quota_bytes: int = 0,
    sync_dir: Callable[[Path], None] | None = None,
) -> Path:
    """Store ``body`` in the Maildir ``maildir``; return the file's path in ``new/``.

    ``return_path`` is the envelope sender without brackets ("" for the null sender ``<>``),
    ``delivered_to`` the recipient address. Durable when this returns; raises MailboxFullError when
    the message would not fit in ``quota_bytes`` (0: no quota), OSError on any disk error.
    ``sync_dir`` fsyncs a directory (tests pass a recorder)."""
    sync = fsync_dir if sync_dir is None else sync_dir
    header = f"Return-Path: <{return_path}>\r\nDelivered-To: {delivered_to}\r\n".encode()
    if quota_bytes > 0:
        size = mailbox_size(maildir) + len(header) + len(body)
        if size > quota_bytes:
            raise MailboxFullError(maildir, size, quota_bytes)
    _make_dirs(maildir, sync)
    fd, name = _open_unique(maildir / "tmp", clock, rng, hostname)
    tmp_path = maildir / "tmp" / name
    try:
        try:
            write_all(fd, header + body)
            os.fsync(fd)
        finally:
            os.close(fd)
        final = maildir / "new" / name
        os.rename(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    sync(maildir / "new")
    return final
