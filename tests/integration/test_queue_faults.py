"""Storage faults, for real: a full filesystem (a tiny tmpfs in a private mount namespace) and a
write error (RLIMIT_FSIZE). Each runs in a child process, which reports what it saw as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

PRELUDE = """
import asyncio, json, os, resource, signal, sys
from pathlib import Path
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import QueueError, QueueFullError, SqliteQueue

ENV = Envelope(Address("a", "x.test"), (Recipient(Address("b", "y.test")),))

def kind(result):
    if isinstance(result, QueueFullError):
        return "full"
    if isinstance(result, QueueError):
        return "error"
    return "ok" if isinstance(result, str) else repr(result)

async def attempt(q, n, size):
    got = await asyncio.gather(*(q.enqueue(ENV, os.urandom(size)) for _ in range(n)), return_exceptions=True)
    return [kind(r) for r in got]
"""

DISK_FULL = """
async def main():
    root = Path(sys.argv[1])
    q = SqliteQueue(root / "queue")
    await q.open()
    before = await q.enqueue(ENV, b"before")
    with open(root / "filler", "wb", buffering=0) as f:  # fill the filesystem to the last block
        try:  # unbuffered: a partial last write leaves nothing for close() to flush
            while True:
                f.write(b"\\0" * 65536)
        except OSError:
            pass
    full = await attempt(q, 5, 300_000)
    (root / "filler").unlink()
    after = await attempt(q, 5, 300_000)
    listed = await q.list_messages()
    ok = await q.read_body(before) == b"before"
    await q.close()
    print(json.dumps({"full": full, "after": after, "listed": len(listed), "before_ok": ok}))

asyncio.run(main())
"""

WRITE_ERROR = """
async def main():
    root = Path(sys.argv[1])
    q = SqliteQueue(root / "queue")
    await q.open()
    await q.enqueue(ENV, b"before")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    biggest = max(p.stat().st_size for p in (root / "queue").iterdir())
    resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 100_000, hard))
    failed = await attempt(q, 5, 300_000)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    after = await attempt(q, 5, 300_000)
    listed = await q.list_messages()
    await q.close()
    print(json.dumps({"failed": failed, "after": after, "listed": len(listed)}))

asyncio.run(main())
"""


def run_child(tmp_path: Path, script: str, *, tmpfs_kib: int | None = None) -> dict[str, Any]:
    path = tmp_path / "child.py"
    path.write_text(PRELUDE + script)
    root = tmp_path / "root"
    root.mkdir()
    command = [sys.executable, str(path), str(root)]
    if tmpfs_kib is not None:
        # A private mount namespace (as a mapped root user): the tmpfs vanishes with the child.
        mount = f'mount -t tmpfs -o size={tmpfs_kib}k tmpfs {root} && exec "$@"'
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, "sh", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_disk_full_gives_queue_full_and_the_queue_recovers(tmp_path: Path) -> None:
    seen = run_child(tmp_path, DISK_FULL, tmpfs_kib=4096)
    assert seen["full"] == ["full"] * 5  # → 452 4.3.1 for every waiting session
    assert seen["after"] == ["ok"] * 5  # space is back: the same open queue works again
    assert seen["listed"] == 6  # nothing of the failed batch became visible
    assert seen["before_ok"]


def test_write_error_gives_queue_error_and_the_queue_recovers(tmp_path: Path) -> None:
    seen = run_child(tmp_path, WRITE_ERROR)
    assert seen["failed"] == ["error"] * 5  # → 451 4.3.0
    assert seen["after"] == ["ok"] * 5
    assert seen["listed"] == 6
