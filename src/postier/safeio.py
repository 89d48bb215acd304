"""Durable file writes: the one place Postier spells out how bytes reach stable storage.

Theory of operation (STYLE.md habit 3; chasquid ``internal/safeio``). A file's *contents* are durable
once the file is fsync'd; its *name* — created, renamed or removed — is durable only once the directory
holding it is fsync'd too. So:

- ``atomic_write``: a temp file in the same directory (same file system, so the rename is atomic) →
  write all → fsync → rename over the target → fsync the directory. A reader sees the old file or the
  new one, never a part; after a crash at any instant the target is whole, old or new. A failed write
  leaves no temp file behind.
- ``fsync_dir``: make a directory's entries durable (after creating, renaming or removing in it).
- ``write_all`` / ``pwritev_all``: ``os.write`` and ``os.pwritev`` may write less than asked (a signal,
  a full pipe, a quota); these go on where the last call stopped.

No logging, no retries: an ``OSError`` goes to the caller, who knows what the write was for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["IOV_MAX", "atomic_write", "fsync_dir", "pwritev_all", "write_all"]

IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers per pwritev (1,024 on Linux)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every octet of ``data`` to ``fd`` (a short write goes on where it stopped)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def pwritev_all(fd: int, buffers: Sequence[bytes], offset: int) -> None:
    """Write every buffer, in order, from ``offset``, ``IOV_MAX`` buffers per call at most (a short
    write goes on where it stopped)."""
    views = [memoryview(b) for b in buffers if b]
    while views:
        done = os.pwritev(fd, views[:IOV_MAX], offset)
        offset += done
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    before_sync: Callable[[int], None] | None = None,
) -> os.stat_result:
    """Replace ``path`` with ``data``, atomically and durably (see the module docstring).

    ``mode`` is set exactly (not filtered by the umask). ``before_sync`` is called with the temp file's
    descriptor once the data is written, before the fsync (to set its mtime, say). Returns the new
    file's ``fstat``. The directory must exist."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)  # O_EXCL, 0600
    try:
        try:
            write_all(fd, data)
            if mode != 0o600:
                os.fchmod(fd, mode)
            if before_sync is not None:
                before_sync(fd)
            os.fsync(fd)
            stat = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return stat
