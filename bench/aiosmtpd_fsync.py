"""aiosmtpd as a durable peer: ``python -m bench.aiosmtpd_fsync --port P --dir D [--relay-port S]``.

The handler does what a careful aiosmtpd user would do to keep the "250 means stored" promise: write the
message to a temporary file, fsync it, rename it into place and fsync the directory, all in a worker
thread so that sessions overlap, and only then return 250. With ``--relay-port`` the stored file is
then forwarded to 127.0.0.1:S by a few pooled aiosmtplib connections and removed — a minimal
store-and-forward relay for the end-to-end scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session

RELAY_WORKERS = 20
_counter = itertools.count()


def _store(directory: Path, data: bytes) -> Path:
    name = f"{os.getpid()}-{next(_counter)}"
    tmp, final = directory / f".{name}.tmp", directory / f"{name}.eml"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


class FsyncHandler:
    def __init__(self, directory: Path, outbox: asyncio.Queue[tuple[Path, str, list[str]]] | None) -> None:
        self.directory = directory
        self.outbox = outbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        path = await asyncio.to_thread(_store, self.directory, data)
        if self.outbox is not None:
            self.outbox.put_nowait((path, envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued"


async def _relay_worker(port: int, outbox: asyncio.Queue[tuple[Path, str, list[str]]]) -> None:
    client: aiosmtplib.SMTP | None = None
    while True:
        path, sender, rcpts = await outbox.get()
        try:
            if client is None or not client.is_connected:
                client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
                await client.connect()
            await client.sendmail(sender, rcpts, await asyncio.to_thread(path.read_bytes))
            await asyncio.to_thread(path.unlink)
        except (aiosmtplib.SMTPException, OSError):
            client = None
            outbox.put_nowait((path, sender, rcpts))  # retried by the next free worker
            await asyncio.sleep(0.1)


async def serve(port: int, directory: Path, relay_port: int | None) -> None:
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    outbox: asyncio.Queue[tuple[Path, str, list[str]]] | None = None
    workers: list[asyncio.Task[Any]] = []
    if relay_port is not None:
        outbox = asyncio.Queue()
        workers = [asyncio.create_task(_relay_worker(relay_port, outbox)) for _ in range(RELAY_WORKERS)]
    handler = FsyncHandler(directory, outbox)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="aiosmtpd.bench.test", data_size_limit=50 * 1024 * 1024),
        host="127.0.0.1",
        port=port,
        backlog=4096,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    for w in workers:
        w.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--relay-port", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.dir, args.relay_port))


if __name__ == "__main__":
    main()
