"""api/compose.py: the JSON of POST /v1/messages made into MIME and an envelope (table-driven)."""

from __future__ import annotations

import base64
import email
from email import policy

import pytest

from postier.api.compose import Attachment, ComposeError, SendRequest, compose
from postier.mail.envelope import BodyType


def _compose(**fields: object) -> tuple[list[str], str, email.message.EmailMessage]:
    req = SendRequest(**fields)  # type: ignore[arg-type]
    out = compose(req, hostname="mx.test", max_recipients=10)
    msg = email.message_from_bytes(out.message, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert b"\r\n" in out.message and b"\n" not in out.message.replace(b"\r\n", b"")
    return [str(r.address) for r in out.envelope.recipients], str(out.envelope.sender), msg


def test_text_and_html_make_an_alternative_and_bcc_stays_out_of_the_headers() -> None:
    rcpts, sender, msg = _compose(
        sender="Alice <alice@example.test>",
        to=["bob@far.test"],
        cc=["Carol <carol@far.test>"],
        bcc=["dave@far.test", "bob@far.test"],
        subject="Héllo",
        text="plain",
        html="<p>rich</p>",
        headers={"X-Campaign": "spring"},
    )
    assert sender == "alice@example.test"
    assert rcpts == ["bob@far.test", "carol@far.test", "dave@far.test"]  # bob once
    assert msg["Bcc"] is None and "dave" not in msg.as_string()
    assert msg["Subject"] == "Héllo" and msg["X-Campaign"] == "spring"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"].endswith("@mx.test>") and msg["Date"]


def test_attachments_make_a_mixed_message() -> None:
    data = bytes(range(256))
    _, _, msg = _compose(
        sender="a@example.test",
        to=["b@far.test"],
        text="see attached",
        attachments=[Attachment("data.bin", base64.b64encode(data).decode())],
    )
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_attachments())
    assert parts[0].get_filename() == "data.bin" and parts[0].get_content() == data


def test_raw_message_takes_recipients_from_headers_and_drops_bcc() -> None:
    raw = "From: a@example.test\nTo: b@far.test\nBcc: hidden@far.test,\n x@far.test\nSubject: s\n\nbody é\n"
    out = compose(SendRequest(raw=raw), hostname="mx.test", max_recipients=10)
    assert [str(r.address) for r in out.envelope.recipients] == [
        "b@far.test",
        "hidden@far.test",
        "x@far.test",
    ]
    assert b"hidden" not in out.message and b"x@far" not in out.message
    assert out.message.endswith(b"body \xc3\xa9\r\n")
    assert out.envelope.body is BodyType.EIGHT_BIT_MIME


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": ["b@far.test"], "text": "x"}, "from"),
        ({"sender": "a@example.test", "text": "x"}, "to"),
        ({"sender": "not an address", "to": ["b@far.test"], "text": "x"}, "from"),
        ({"sender": "a@example.test", "to": ["b@far.test"]}, "text"),
        (
            {"sender": "a@example.test", "to": ["b@far.test"], "text": "x", "headers": {"From": "x"}},
            "headers",
        ),
        (
            {
                "sender": "a@example.test",
                "to": ["b@far.test"],
                "text": "x",
                "headers": {"X-A": "1\r\nBcc: x"},
            },
            "headers",
        ),
        ({"sender": "a@example.test", "to": [f"r{i}@far.test" for i in range(11)], "text": "x"}, "to"),
        ({"raw": "From: a@example.test\n\nx", "subject": "s"}, "raw"),
        (
            {"sender": "a@example.test", "to": ["b@far.test"], "attachments": [Attachment("f", "%%%")]},
            "attachments[0].content",
        ),
    ],
)
def test_bad_requests_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ComposeError) as info:
        compose(SendRequest(**fields), hostname="mx.test", max_recipients=10)  # type: ignore[arg-type]
    assert info.value.field == field


def test_utf8_addresses_make_utf8_headers() -> None:
    out = compose(
        SendRequest(sender="a@example.test", to=["Jö <jöhn@exämple.test>"], text="x"),
        hostname="mx.test",
        max_recipients=10,
    )
    assert out.envelope.smtputf8
    assert "To: Jö <jöhn@exämple.test>\r\n".encode() in out.message  # RFC 6532, no encoded words
