"""A scripted milter (the filter side of the Sendmail milter protocol v6) for the actions no Debian
milter is easy to drive into: reject, tempfail, a reply code, discard, header changes, a new body,
quarantine. A fake implementing the same protocol over a real socket, not a mock: it negotiates,
answers every step with ``c`` and at the end of message sends its ``script`` of packets."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Sequence

import pytest

from postier.antispam.milter.protocol import encode

__all__ = ["FakeMilter", "fake_milter"]

# SMFIP_NR_HDR | SMFIP_NOHELO: the fake asks for no reply to headers and no HELO, to exercise both.
_PROTOCOL = 0x80 | 0x02
_NO_REPLY = {b"D", b"L"}  # macros never answered; headers not answered (NR_HDR)


class FakeMilter:
    def __init__(self) -> None:
        self.script: Sequence[bytes] = (encode("a"),)
        self.body_reply = "c"  # "s": SMFIR_SKIP, no more body chunks wanted
        self.seen: list[tuple[str, bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(4)
                (length,) = struct.unpack("!I", head)
                packet = await reader.readexactly(length)
                command, data = packet[:1], packet[1:]
                self.seen.append((command.decode(), data))
                if command == b"O":
                    writer.write(encode("O", struct.pack("!III", 6, 0x3F, _PROTOCOL)))
                elif command == b"E":
                    writer.write(b"".join(self.script))
                elif command == b"B":
                    writer.write(encode(self.body_reply))
                elif command == b"Q":
                    break
                elif command not in _NO_REPLY:
                    writer.write(encode("c"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def fake_milter() -> AsyncIterator[FakeMilter]:
    milter = FakeMilter()
    await milter.start()
    yield milter
    await milter.stop()
