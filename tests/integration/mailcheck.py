"""Reading back what a running Postier queued, for assertions."""

from __future__ import annotations

from postier.mail.envelope import Envelope
from tests.integration.harness import RunningServer


def queue_id_from_reply(text: bytes) -> str:
    """The id at the end of '2.0.0 Ok: queued as ID'."""
    return text.decode().rsplit(" ", 1)[1].strip()


async def queued_envelope(server: RunningServer, queue_id: str) -> Envelope:
    record = await server.app.queue.get(queue_id)
    return record.envelope


async def queued_body(server: RunningServer, queue_id: str) -> bytes:
    return await server.app.queue.read_body(queue_id)
