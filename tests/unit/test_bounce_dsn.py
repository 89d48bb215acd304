"""build_dsn: the bounce parsed back by the stdlib email package and by flufl.bounce."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message

import pytest
from flufl.bounce import all_failures, scan_message

from postier.bounce import Action, DsnOptions, RecipientReport, build_dsn, dsn_envelope
from postier.mail.address import Address
from postier.mail.envelope import BodyType, Envelope, Notify, Recipient, Ret
from postier.mail.reply import EnhancedStatus, Reply
from postier.smtp.grammar import xtext_decode

NOW = datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
ARRIVED = NOW - timedelta(hours=2)
OPTIONS = DsnOptions(reporting_mta="mx.postier.test", max_full_bytes=10_000)
ORIGINAL = (
    b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch\r\n"
    b"Message-ID: <lunch-1@example.org>\r\n\r\nShall we meet at noon?\r\n.dots stay\r\n"
)
BOB = Recipient(Address("bob", "example.net"), orcpt="rfc822;bob@example.net")
CAROL = Recipient(Address("carol", "example.net"))
USER_UNKNOWN = Reply(550, EnhancedStatus(5, 1, 1), "<bob@example.net>: Recipient address rejected")


def envelope(**changes: object) -> Envelope:
    fields: dict[str, object] = {
        "sender": Address("alice", "example.org"),
        "recipients": (BOB, CAROL),
        "envid": "QQ314159",
    }
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def failed(recipient: Recipient = BOB, reply: Reply = USER_UNKNOWN) -> RecipientReport:
    return RecipientReport(recipient, Action.FAILED, reply, remote_mta="mx1.example.net", last_attempt_at=NOW)


def delayed(recipient: Recipient = CAROL) -> RecipientReport:
    reply = Reply(451, EnhancedStatus(4, 7, 1), "Greylisted, try again later")
    return RecipientReport(
        recipient,
        Action.DELAYED,
        reply,
        remote_mta="mx1.example.net",
        last_attempt_at=NOW,
        will_retry_until=ARRIVED + timedelta(days=5),
    )


def build(env: Envelope | None = None, reports: list[RecipientReport] | None = None, **kw: object) -> bytes:
    return build_dsn(
        env or envelope(),
        reports or [failed()],
        kw.pop("original", ORIGINAL),  # type: ignore[arg-type]
        options=kw.pop("options", OPTIONS),  # type: ignore[arg-type]
        arrival_at=ARRIVED,
        now=NOW,
        message_id="dsn-0001",
        queue_id="Q1A2B3",
    )


def parse(dsn: bytes) -> EmailMessage:
    message = email.message_from_bytes(dsn, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def status_blocks(message: EmailMessage) -> list[Message]:
    part = message.get_payload()[1]  # type: ignore[index]
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


def assert_wire_clean(dsn: bytes) -> None:
    assert re.search(rb"(?<!\r)\n", dsn) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", dsn) is None, "bare CR"
    assert dsn.endswith(b"\r\n")
    assert max(len(line) for line in dsn.split(b"\r\n")) <= 998


def test_failure_report_structure_and_headers() -> None:
    dsn = build()
    assert_wire_clean(dsn)
    message = parse(dsn)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mx.postier.test>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-ID"] == "<dsn-0001@mx.postier.test>"
    assert message["Date"].datetime == NOW


def test_delivery_status_fields() -> None:
    per_message, bob = status_blocks(parse(build()))
    assert per_message["Reporting-MTA"] == "dns; mx.postier.test"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]) == ARRIVED
    assert bob["Original-Recipient"] == "rfc822;bob@example.net"
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx1.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected"
    assert email.utils.parsedate_to_datetime(bob["Last-Attempt-Date"]) == NOW
    assert bob["Will-Retry-Until"] is None


def test_human_part_says_what_failed_why_and_what_to_do() -> None:
    text = " ".join(parse(build()).get_payload()[0].get_content().split())  # type: ignore[index]
    assert "could not be delivered" in text
    assert "<bob@example.net>" in text and "mx1.example.net" in text and "550 5.1.1" in text
    assert "Check the recipient's address" in text


def test_flufl_bounce_finds_the_failed_recipients() -> None:
    reports = [failed(), failed(CAROL, Reply(550, EnhancedStatus(5, 2, 1), "Mailbox disabled"))]
    message = email.message_from_bytes(build(reports=reports))
    assert scan_message(message) == {b"bob@example.net", b"carol@example.net"}


def test_flufl_bounce_sees_delays_as_temporary() -> None:
    message = email.message_from_bytes(build(reports=[failed(), delayed()]))
    temporary, permanent = all_failures(message)
    assert (temporary, permanent) == ({b"carol@example.net"}, {b"bob@example.net"})


@pytest.mark.parametrize(
    ("ret", "reports", "original", "kind", "has_body"),
    [
        (Ret.FULL, "failed", ORIGINAL, "message/rfc822", True),
        (None, "failed", ORIGINAL, "message/rfc822", True),
        (Ret.HDRS, "failed", ORIGINAL, "text/rfc822-headers", False),
        (Ret.FULL, "failed", ORIGINAL + b"x" * 60 + b"\r\n" * 200, "text/rfc822-headers", False),  # big
        (Ret.FULL, "failed", ORIGINAL + b"y" * 1200 + b"\r\n", "text/rfc822-headers", False),  # long line
        (Ret.FULL, "delayed", ORIGINAL, "text/rfc822-headers", False),  # RET is for failures only
    ],
)
def test_what_of_the_original_comes_back(
    ret: Ret | None, reports: str, original: bytes, kind: str, has_body: bool
) -> None:
    report = failed() if reports == "failed" else delayed()
    options = DsnOptions(reporting_mta="mx.postier.test", max_full_bytes=len(ORIGINAL) + 100)
    dsn = build(envelope(ret=ret), [report], original=original, options=options)
    assert_wire_clean(dsn)
    part = parse(dsn).get_payload()[2]  # type: ignore[index]
    assert part.get_content_type() == kind
    assert (b"Shall we meet at noon?" in dsn) is has_body
    assert b"Subject: Lunch" in dsn


def test_returned_message_is_the_original() -> None:
    part = parse(build()).get_payload()[2]  # type: ignore[index]
    inner = part.get_payload()[0]
    assert inner["Message-ID"] == "<lunch-1@example.org>"
    assert inner.get_content().replace("\r\n", "\n") == "Shall we meet at noon?\n.dots stay\n"


def test_bare_lf_original_is_returned_with_crlf() -> None:
    dsn = build(original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert_wire_clean(dsn)
    assert b"Shall we meet at noon?\r\n" in dsn


def test_delay_notice() -> None:
    message = parse(build(reports=[delayed()]))
    assert message["Subject"] == "Delivery Status Notification (Delay)"
    _, carol = status_blocks(message)
    assert carol["Action"] == "delayed"
    assert carol["Status"] == "4.7.1"
    assert email.utils.parsedate_to_datetime(carol["Will-Retry-Until"]) == ARRIVED + timedelta(days=5)
    assert carol["Original-Recipient"] is None
    text = " ".join(message.get_payload()[0].get_content().split())  # type: ignore[index]
    assert "do not need to send the message again" in text


@pytest.mark.parametrize(
    ("action", "subject"),
    [
        (Action.DELIVERED, "Delivery Status Notification (Success)"),
        (Action.RELAYED, "Delivery Status Notification (Success)"),
    ],
)
def test_success_notice(action: Action, subject: str) -> None:
    report = RecipientReport(
        BOB, action, Reply(250, EnhancedStatus(2, 0, 0), "Ok"), remote_mta="mx1.example.net"
    )
    message = parse(build(reports=[report]))
    assert message["Subject"] == subject
    assert status_blocks(message)[1]["Action"] == action.value
    assert message.get_payload()[2].get_content_type() == "text/rfc822-headers"  # type: ignore[index]


def test_local_decision_has_no_remote_mta() -> None:
    reply = Reply(556, EnhancedStatus(5, 1, 10), "Recipient domain does not accept mail (null MX)")
    _, bob = status_blocks(parse(build(reports=[RecipientReport(BOB, Action.FAILED, reply)])))
    assert bob["Remote-MTA"] is None
    assert bob["Status"] == "5.1.10"
    assert bob["Diagnostic-Code"].startswith("X-Postier; 556 5.1.10")


@pytest.mark.parametrize(
    ("wire_envid", "wire_orcpt"),
    [
        ("QQ314159", "rfc822;bob@example.net"),
        ("order+2B42+3Dx", "rfc822;bob+2Bsales@example.net"),  # "+" and "=" travel as hexchars
        ("with+20space+0D+0Aand-crlf", "rfc822;odd+20guy@example.net"),  # unprintable once decoded
    ],
)
def test_envid_and_orcpt_round_trip_through_xtext(wire_envid: str, wire_orcpt: str) -> None:
    """MAIL … ENVID= / RCPT … ORCPT= are xtext on the wire; the envelope keeps them decoded; the
    DSN shows them decoded when printable, re-encoded as xtext otherwise — either way the sender
    gets back exactly what it sent."""
    envid, orcpt = xtext_decode(wire_envid), xtext_decode(wire_orcpt)
    recipient = Recipient(Address("bob", "example.net"), orcpt=orcpt)
    dsn = build(envelope(envid=envid, recipients=(recipient,)), [failed(recipient)])
    assert_wire_clean(dsn)
    per_message, bob = status_blocks(parse(dsn))
    shown_envid = per_message["Original-Envelope-Id"]
    if envid.isprintable() and " " not in envid:
        assert shown_envid == envid
    else:
        assert xtext_decode(shown_envid) == envid
    addr_type, _, shown = bob["Original-Recipient"].partition(";")
    assert addr_type == "rfc822"
    address = orcpt.partition(";")[2]
    assert (
        shown == address if address.isprintable() and " " not in address else xtext_decode(shown) == address
    )


def test_smtputf8_original_gets_the_global_types() -> None:
    sender = Address("andré", "exemple.fr")
    recipient = Recipient(Address("józef", "przykład.pl"))
    original = "From: André <andré@exemple.fr>\r\nSubject: Café\r\n\r\nZażółć gęślą jaźń\r\n".encode()
    env = Envelope(sender=sender, recipients=(recipient,), smtputf8=True, body=BodyType.EIGHT_BIT_MIME)
    dsn = build(
        env, [failed(recipient, Reply(550, EnhancedStatus(5, 1, 1), "No such user"))], original=original
    )
    assert_wire_clean(dsn)
    message = parse(dsn)
    assert message.get_param("report-type") == "global-delivery-status"
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "text/plain",
        "message/global-delivery-status",
        "message/global",
    ]
    assert "To: <andré@exemple.fr>".encode() in dsn
    assert "Final-Recipient: utf-8; józef@przykład.pl".encode() in dsn
    assert "Zażółć gęślą jaźń".encode() in dsn


def test_smtputf8_headers_only_is_global_headers() -> None:
    sender = Address("andré", "exemple.fr")
    env = Envelope(sender=sender, recipients=(BOB,), smtputf8=True, ret=Ret.HDRS)
    message = parse(build(env, [failed()]))
    assert message.get_payload()[2].get_content_type() == "message/global-headers"  # type: ignore[index]


def test_long_and_multiline_diagnostics_are_folded_not_injected() -> None:
    text = "first line\nInjected-Field: evil " + "word " * 300
    dsn = build(reports=[failed(reply=Reply(550, EnhancedStatus(5, 7, 1), text))])
    assert_wire_clean(dsn)
    assert b"\r\nInjected-Field" not in dsn
    _, bob = status_blocks(parse(dsn))
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.7.1 first line / Injected-Field: evil word")
    assert bob["Action"] == "failed"


def test_boundary_never_occurs_in_the_content() -> None:
    first = build()
    boundary = parse(first).get_boundary()
    assert boundary is not None
    tricky = ORIGINAL + b"--" + boundary.encode() + b"\r\n"
    message = parse(build(original=tricky))
    assert message.get_boundary() != boundary
    assert len(list(message.iter_parts())) == 3


def test_output_is_deterministic() -> None:
    assert build() == build()


def test_a_bounce_is_never_bounced() -> None:
    with pytest.raises(ValueError, match="never bounced"):
        build(envelope(sender=None))


def test_dsn_envelope_has_the_null_sender() -> None:
    dsn = build()
    env = dsn_envelope(envelope(), dsn)
    assert env.sender is None
    assert [r.address for r in env.recipients] == [Address("alice", "example.org")]
    assert env.recipients[0].notify == frozenset({Notify.NEVER})
    assert env.declared_size == len(dsn)
    assert not env.smtputf8


def _returned(dsn: bytes) -> bytes:
    """The third part of the report (the original or its headers), raw."""
    boundary = re.search(rb'boundary="([^"]+)"', dsn)
    assert boundary is not None
    return dsn.split(b"--" + boundary[1])[3]


@pytest.mark.parametrize(
    "original",
    [
        b"Subject: no blank line\r\n" + b"body line without a colon\r\n" * 5000,
        b"Subject: no blank line\r\n\tfolded\r\n" + b"X-Header: " + b"v" * 50 + b"\r\n" + b"tail\r\n" * 9,
        b"Subject: all header-like\r\n" + b"X-A: 1\r\n" * 200_000,
        b"Subject: over\r\n" + b"X-A: 1\r\n" * 50 + b"\r\n" + b"b" * 998 + b"\r\n" * 20_000,
    ],
)
@pytest.mark.parametrize("ret", [Ret.HDRS, Ret.FULL])
def test_returned_part_is_capped_whatever_the_body(original: bytes, ret: Ret) -> None:
    """Issue 14, finding 3: "headers" are header fields only, never a body without a blank line, and
    the returned part never exceeds max_full_bytes."""
    dsn = build(envelope(ret=ret), original=original)
    returned = _returned(dsn)
    assert len(returned) <= OPTIONS.max_full_bytes + 200
    if ret is Ret.HDRS or len(original) > OPTIONS.max_full_bytes:
        assert b"body line without a colon" not in returned and b"tail" not in returned
    assert b"Subject: " in returned
    parse(dsn)


def test_small_full_message_still_returned_whole() -> None:
    assert b"Shall we meet at noon?" in _returned(build(envelope(ret=Ret.FULL)))
