"""Message bodies that may live on disk: the spool file of one message, and ``MessageBody``.

Theory of operation. A session keeps a message in memory only while it is small; past
``server.hold_message_bytes`` the engine hands its octets out and the session appends them to a
``SpoolFile``: an anonymous file (``O_TMPFILE``) in ``data_dir/spool``, on the queue's file system.
It has no name, so nothing is left behind after a crash and nobody else can open it; it is gone when
closed. Its writes reach the page cache only: durability is the queue's business, which copies the
octets into its own store (``os.copy_file_range``: in the kernel, never through Python) and syncs
that before the 250.

``MessageBody`` is what ``Queue.enqueue`` takes when a body is not plain ``bytes``: ``head`` (in
memory: the trace header, the header fields the checks added, and the message when it was small),
then the octets of ``spool``. It never copies the spool into memory unless asked (``read``);
``sha256`` and ``chunks`` read it in bounded pieces, ``copy_to`` copies it file to file.

Imports nothing of ours (a bottom layer, like ``safeio``): the server, the policy checks and the
queue backends all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

__all__ = ["CHUNK_OCTETS", "MessageBody", "ReadBudget", "SpoolFile", "as_bytes", "prepend"]

CHUNK_OCTETS = 1 << 20
"""Reads of a spool file are at most this long: the memory a reader of a large body costs."""


class SpoolFile:
    """An anonymous, append-only file in ``directory``; ``close`` drops it."""

    __slots__ = ("fd", "size")

    def __init__(self, directory: Path) -> None:
        self.fd = _anonymous_file(directory)
        self.size = 0

    def write(self, parts: Sequence[bytes | bytearray]) -> None:
        """Append ``parts`` in order (one ``pwritev``, short writes resumed)."""
        views = [memoryview(p) for p in parts if p]
        while views:
            done = os.pwritev(self.fd, views[:1024], self.size)
            self.size += done
            while views and done >= len(views[0]):
                done -= len(views.pop(0))
            if done:
                views[0] = views[0][done:]

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    @property
    def is_closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _anonymous_file(directory: Path) -> int:
    flags = os.O_RDWR | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile:
        with contextlib.suppress(OSError):  # a file system without O_TMPFILE: a named file, unlinked
            return os.open(directory, flags | tmpfile, 0o600)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".spool-")
    os.unlink(name)
    return fd


class MessageBody:
    """``head`` then the octets of ``spool`` (when given): a message body without a copy in memory.
    The body owns the spool file from here on: ``close`` it when done (the queue does not)."""

    __slots__ = ("_sha256", "head", "spool")

    def __init__(self, head: bytes, spool: SpoolFile | None = None) -> None:
        self.head = head
        self.spool = spool
        self._sha256: str | None = None

    def __len__(self) -> int:
        return len(self.head) + (self.spool.size if self.spool is not None else 0)

    @property
    def is_spooled(self) -> bool:
        return self.spool is not None and self.spool.size > 0

    def chunks(self, size: int = CHUNK_OCTETS, start: int = 0) -> Iterator[bytes]:
        """The body from ``start`` in order, in pieces of at most ``size`` octets from the spool
        (blocking reads)."""
        if start < len(self.head):
            yield self.head[start:] if start else self.head
        spool = self.spool
        if spool is None:
            return
        offset = max(start - len(self.head), 0)
        while offset < spool.size:
            piece = spool.pread(min(size, spool.size - offset), offset)
            if not piece:
                raise OSError(f"spool file shorter than {spool.size} octets")
            offset += len(piece)
            yield piece

    def header_section(self, limit: int = 1 << 20) -> bytes:
        """The header section (up to, not including, the empty line that ends it; RFC 5322 §2.1),
        read from the start in bounded pieces, at most ``limit`` octets (the engine refused longer
        sections already). A body without an empty line is all header: its first ``limit`` octets."""
        return self.split(limit)[0]

    def split(self, limit: int = 1 << 20) -> tuple[bytes, int]:
        """``(header section, where the body starts)``: see ``header_section``; no empty line within
        ``limit``: the body starts at the end."""
        data = bytearray()
        for piece in self.chunks(size=64 * 1024):
            scan_from = max(len(data) - 3, 0)
            data += piece
            if data.startswith(b"\r\n"):
                return b"", 2  # an empty first line: no header fields
            hit = data.find(b"\r\n\r\n", scan_from)
            if hit >= 0:
                return bytes(data[:hit]), hit + 4
            if len(data) > limit:
                break
        return bytes(data[:limit]), len(self)

    def read(self) -> bytes:
        """The whole body in memory: a copy, for those who need one (avoid it for large bodies)."""
        if not self.is_spooled:
            return self.head
        return b"".join(self.chunks())

    def sha256(self) -> str:
        """The hex SHA-256 of the body (reads the spool: call it off the event loop); kept once known."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            for piece in self.chunks():
                digest.update(piece)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def copy_to(self, fd: int, offset: int) -> int:
        """Write the body at ``offset`` of ``fd``: ``head`` by ``pwrite``, the spool by
        ``copy_file_range`` (in the kernel). Returns the octets written."""
        start = offset
        view = memoryview(self.head)
        while view:
            done = os.pwrite(fd, view, offset)
            offset += done
            view = view[done:]
        spool = self.spool
        if spool is not None:
            copied = 0
            while copied < spool.size:
                done = _copy_range(spool.fd, fd, spool.size - copied, copied, offset)
                if done == 0:
                    raise OSError(f"spool file shorter than {spool.size} octets")
                copied += done
                offset += done
        return offset - start

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


def _copy_range(src: int, dst: int, count: int, src_offset: int, dst_offset: int) -> int:
    try:
        return os.copy_file_range(src, dst, count, src_offset, dst_offset)
    except OSError as exc:  # EXDEV, ENOSYS, EINVAL on some file systems: copy through user space
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    piece = os.pread(src, min(count, CHUNK_OCTETS), src_offset)
    view = memoryview(piece)
    written = 0
    while view:
        done = os.pwrite(dst, view, dst_offset + written)
        written += done
        view = view[done:]
    return written


def as_bytes(body: bytes | MessageBody) -> bytes:
    """The body as ``bytes`` (a backend that cannot stream a spooled body; copies it)."""
    return body if isinstance(body, bytes) else body.read()


def prepend(head: bytes, body: bytes | MessageBody) -> bytes | MessageBody:
    """``head`` then ``body`` (trace and added header fields before a message), without copying a
    spooled body: the result shares its spool file."""
    if isinstance(body, bytes):
        return head + body
    return MessageBody(head + body.head, body.spool)


class ReadBudget:
    """Octets of spooled messages that may be read whole into memory at once, over all sessions of
    a process (a check that needs the whole message: DKIM and ARC verification). A reader waits its
    turn, so that many large messages ending at once cost the budget, not their sum. A message larger
    than the whole budget counts as the whole budget."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.free = self.total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, octets: int) -> AsyncIterator[None]:
        need = min(octets, self.total)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= need)
            self.free -= need
        try:
            yield
        finally:
            self.free += need
            async with self._changed:
                self._changed.notify_all()
