"""api/events.py (mail-log line → event), webhooks.sign/verify, eventstore.py (outbox cursors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.api.events import bounce_type, to_event
from postier.api.eventstore import EventStore
from postier.api.webhooks import sign, verify


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    [
        (
            "queued",
            {"id": "Q", "from": "<a@b.test>", "nrcpt": 2},
            {"type": "injection", "sender": "a@b.test"},
        ),
        (
            "delivery",
            {"id": "Q", "rcpt": "<x@y.test>", "result": "delivered", "reply": "250 2.0.0 Ok"},
            {"type": "delivery", "recipient": "x@y.test", "enhanced_status": "2.0.0"},
        ),
        (
            "delivery",
            {"id": "Q", "rcpt": "<x@y.test>", "result": "deferred", "reply": "451 4.7.1 later"},
            {"type": "delay", "enhanced_status": "4.7.1"},
        ),
        (
            "delivery",
            {"id": "Q", "rcpt": "<x@y.test>", "result": "failed", "reply": "550 5.1.1 no", "dsn": "5.1.1"},
            {"type": "bounce", "bounce_type": "hard"},
        ),
        (
            "delivery",
            {"id": "Q", "rcpt": "<x@y.test>", "result": "failed", "reply": "552 5.2.2 full"},
            {"type": "bounce", "bounce_type": "soft"},
        ),
        ("reject", {"stage": "rcpt", "rcpt": "<x@y.test>", "reply": "550 5.1.1 no"}, {"type": "reject"}),
        ("reject", {"stage": "connect", "reply": "554 5.7.1 no"}, None),
        (
            "suppressed",
            {"rcpt": "<x@y.test>", "reason": "manual"},
            {"type": "suppression", "reason": "manual"},
        ),
        ("connect", {"sid": "S"}, None),
    ],
)
def test_mail_log_lines_make_events(
    name: str, fields: dict[str, object], expected: dict[str, object] | None
) -> None:
    event = to_event(name, fields)
    if expected is None:
        assert event is None
    else:
        assert event is not None and expected.items() <= event.items()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("5.1.1", "hard"),
        ("5.1.10", "hard"),
        ("5.2.1", "hard"),
        ("5.2.2", "soft"),
        ("5.7.1", "soft"),
        (None, "soft"),
    ],
)
def test_bounce_type(code: str | None, kind: str) -> None:
    assert bounce_type(code) == kind


def test_signature_verifies_and_refuses_tampering_and_replays() -> None:
    header = sign("s3cret", b'{"events":[]}', 1_000_000)
    assert verify("s3cret", header, b'{"events":[]}', now=1_000_100)
    assert not verify("s3cret", header, b'{"events":[1]}', now=1_000_100)
    assert not verify("other", header, b'{"events":[]}', now=1_000_100)
    assert not verify("s3cret", header, b'{"events":[]}', now=1_000_000 + 301)  # outside the window
    assert not verify("s3cret", "v1=abc", b"", now=0)


def test_the_outbox_cursor_moves_only_when_told(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    assert store.cursor("hook").seq == 0  # a new hook starts at the newest event
    store.append([(1.0, {"type": "delivery", "queue_id": "A"}), (2.0, {"type": "delay", "queue_id": "B"})])
    page = store.page(0, 10, ("delay",))
    assert [e["queue_id"] for e in page.items] == ["B"] and page.last_seq == 2
    assert store.page(0, 1).last_seq == 1
    store.failed("hook", 99.0, "HTTP 503")
    assert store.cursor("hook") == store.cursor("hook") and store.cursor("hook").failures == 1
    store.advance("hook", 2)
    assert store.cursor("hook").seq == 2 and store.cursor("hook").failures == 0
    assert store.prune(0.0, ["hook"], now=10.0) == 2
    late = EventStore(tmp_path / "events.sqlite")
    assert late.cursor("new").seq == 2  # no replay for a hook added later
    store.close()
    late.close()
