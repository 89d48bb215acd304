"""A queued body that cannot be read back (issue 14, finding 9), with a real server on a real queue:
the body is corrupted on disk (its bytes changed in SQLite, or its body-log segment removed) before
the server starts. Before, the recipient stayed leased and was tried every lease (15 min) for ever;
now it is deferred once, then failed with 554 5.3.0 and bounced to the sender, logged with the reason."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from postier.app import Application
from postier.config import parse_config
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import RecipientState, SqliteQueue
from tests.integration.harness import add_users, make_config

pytestmark = pytest.mark.integration

SENDER = Address("alice", "example.test")


async def _enqueue(queue_dir: Path, body: bytes) -> str:
    queue = SqliteQueue(queue_dir)
    await queue.open()
    try:
        return await queue.enqueue(Envelope(SENDER, (Recipient(Address("erin", "example.test")),)), body)
    finally:
        await queue.close()


def _corrupt(queue_dir: Path, how: str) -> None:
    if how == "inline":
        with sqlite3.connect(queue_dir / "queue.db") as db:
            assert db.execute("UPDATE bodies SET data = CAST('Subject: forged' AS BLOB)").rowcount == 1
    else:
        segments = list((queue_dir / "bodies").glob("*.log"))
        assert segments
        for segment in segments:
            segment.unlink()


@pytest.mark.parametrize(("how", "size"), [("inline", 200), ("segment", 64 * 1024)])
async def test_an_unreadable_body_is_bounced_after_one_retry(
    tmp_path: Path, how: str, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    body = b"Subject: precious\r\n\r\n" + b"x" * size + b"\r\n"
    qid = await _enqueue(data_dir / "queue", body)
    _corrupt(data_dir / "queue", how)
    add_users(data_dir, "alice@example.test", "erin@example.test")
    config = parse_config(make_config(data_dir, delivery={"retry_base_s": 1.0, "retry_cap_s": 1.0}))
    app = Application(config)
    caplog.set_level(logging.INFO)
    await app.start()
    try:
        for _ in range(300):
            [r] = (await app.queue.get(qid)).recipients
            if r.state is RecipientState.FAILED:
                break
            await asyncio.sleep(0.1)
        assert r.state is RecipientState.FAILED, (r.state, r.last_reply)
        assert r.attempts == 2 and r.last_reply is not None and r.last_reply.startswith("554 5.3.0 ")
        inbox = data_dir / "mail" / "example.test" / "alice" / "new"
        for _ in range(100):
            if inbox.exists() and list(inbox.iterdir()):
                break
            await asyncio.sleep(0.1)
        [dsn] = [p.read_bytes() for p in inbox.iterdir()]
        assert b"Status: 5.3.0" in dsn and b"Action: failed" in dsn and b"precious" not in dsn
        assert not list((data_dir / "mail" / "example.test" / "erin").glob("new/*"))
    finally:
        await app.stop()
    reasons = [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(reasons) == 2 and ("hash" in reasons[0] or "missing" in reasons[0]), reasons
