"""The session's spool for large messages: written, taken, dropped; a spool that cannot be written
answers the message like a queue that cannot store it (issue 14: 2)."""

from __future__ import annotations

from pathlib import Path

from postier.mail.replies import S
from postier.server.budget import MemoryBudget
from postier.server.spooling import MessageSpool, Receiving
from postier.smtp.server.events import MessageReceived, Reset
from postier.spool import MessageBody


def test_a_spooled_message_becomes_a_body_over_its_file(tmp_path: Path) -> None:
    receiving = Receiving(
        spool_dir=tmp_path, sid="s", budget=MemoryBudget(1000), data_timeout_s=1, min_rate=1
    )
    receiving.spool.write([b"Subject: x\r\n\r\n", bytearray(b"a" * 1000)])
    content = receiving.message(MessageReceived(b"tail\r\n", spooled_octets=1014))
    assert isinstance(content, MessageBody)
    try:
        assert content.read() == b"Subject: x\r\n\r\n" + b"a" * 1000 + b"tail\r\n"
        assert content.header_section() == b"Subject: x"
    finally:
        content.close()
    assert receiving.message(MessageReceived(b"small\r\n")) == b"small\r\n"


def test_a_transaction_that_ends_otherwise_drops_its_spool(tmp_path: Path) -> None:
    receiving = Receiving(
        spool_dir=tmp_path, sid="s", budget=MemoryBudget(1000), data_timeout_s=1, min_rate=1
    )
    receiving.spool.write([b"x" * 100])
    assert receiving.spool.octets == 100
    receiving.after(Reset(S.RESET_OK))
    assert receiving.spool.octets == 0
    receiving.close()


def test_a_spool_that_cannot_be_written_answers_451(tmp_path: Path) -> None:
    spool = MessageSpool(tmp_path / "missing", "s")
    spool.write([b"x"])
    assert spool.error == S.QUEUE_ERROR
    receiving = Receiving(
        spool_dir=tmp_path / "missing", sid="s", budget=MemoryBudget(1000), data_timeout_s=1, min_rate=1
    )
    receiving.spool.write([b"x"])
    assert receiving.message(MessageReceived(b"tail", spooled_octets=1)) == S.QUEUE_ERROR
    assert receiving.spool.error is None  # the next message starts afresh
