"""safeio: atomic replace, directory fsync, write-all — on real files and pipes, with real failures (a
directory in the way, an error raised between write and fsync)."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest

from postier import safeio


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "users.json"
    first = safeio.atomic_write(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert first.st_size == 3
    second = safeio.atomic_write(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    assert (second.st_ino, second.st_size) == (target.stat().st_ino, 11)
    assert second.st_ino != first.st_ino  # a new file renamed over the old one, never written in place
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640])
def test_atomic_write_sets_the_mode_exactly(tmp_path: Path, mode: int) -> None:
    old = os.umask(0o077)  # the umask would strip group/other bits from os.open's mode
    try:
        safeio.atomic_write(tmp_path / "cert.pem", b"x", mode=mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == mode


def test_before_sync_sees_the_temp_file_and_its_effect_is_returned(tmp_path: Path) -> None:
    seen: list[int] = []

    def set_mtime(fd: int) -> None:
        seen.append(os.fstat(fd).st_size)
        os.utime(fd, ns=(1_000_000_000, 1_000_000_000))

    result = safeio.atomic_write(tmp_path / "f", b"12345", before_sync=set_mtime)
    assert seen == [5]  # called once the data is written
    assert result.st_mtime_ns == 1_000_000_000 == (tmp_path / "f").stat().st_mtime_ns


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    safeio.atomic_write(target, b"old")

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        safeio.atomic_write(target, b"new", before_sync=fail)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()  # rename(file, non-empty directory) fails
    (tmp_path / "taken" / "child").write_bytes(b"")
    with pytest.raises(OSError):
        safeio.atomic_write(tmp_path / "taken", b"data")
    assert _leftovers(tmp_path) == []


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        safeio.atomic_write(tmp_path / "absent" / "f", b"data")


def test_fsync_dir(tmp_path: Path) -> None:
    safeio.fsync_dir(tmp_path)  # no error on a directory
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        safeio.fsync_dir(tmp_path / "file")  # O_DIRECTORY: a file is refused, not silently synced


def _drain(fd: int, out: bytearray, done: threading.Event) -> None:
    while chunk := os.read(fd, 65536):
        out += chunk
    done.set()


def test_write_all_through_a_small_pipe() -> None:
    """Data 64 times the pipe's buffer, drained by a reader meanwhile, arrives whole and in order."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    data = bytes(range(256)) * 1024  # 256 KiB, 64 pipe buffers
    out, done = bytearray(), threading.Event()
    reader = threading.Thread(target=_drain, args=(read_fd, out, done))
    reader.start()
    try:
        safeio.write_all(write_fd, data)
    finally:
        os.close(write_fd)
    assert done.wait(10)
    reader.join()
    os.close(read_fd)
    assert bytes(out) == data


def test_write_all_empty(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        safeio.write_all(fd, b"")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b""


def test_pwritev_all_many_buffers_in_order(tmp_path: Path) -> None:
    """More buffers than one pwritev takes (IOV_MAX), empty ones skipped, from an offset: the call that
    takes part of the list is a short write, and the next goes on where it stopped."""
    buffers = [bytes([i % 251]) * (i % 7) for i in range(safeio.IOV_MAX * 2 + 5)]
    path = tmp_path / "log"
    path.write_bytes(b"HEAD")
    fd = os.open(path, os.O_RDWR)
    try:
        safeio.pwritev_all(fd, buffers, 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"HEAD" + b"".join(buffers)
