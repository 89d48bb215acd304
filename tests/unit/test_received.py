from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postier.mail.address import Address
from postier.policy import Message
from postier.policy.basic import hop_count
from postier.server.received import protocol_keyword, received_header

NOW = datetime(2026, 11, 29, 6, 40, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("esmtp", "tls", "auth", "utf8", "expected"),
    [
        (False, False, False, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, False, "ESMTPSA"),
        (True, True, True, True, "UTF8SMTPSA"),
        (True, False, False, True, "UTF8SMTP"),
    ],
)
def test_protocol_keyword_rfc3848_rfc6531(
    esmtp: bool, tls: bool, auth: bool, utf8: bool, expected: str
) -> None:
    assert protocol_keyword(esmtp=esmtp, tls=tls, authenticated=auth, smtputf8=utf8) == expected


def test_single_recipient_header() -> None:
    header = received_header(
        helo="client.example.org",
        client_ip="192.0.2.7",
        hostname="mx.example.test",
        protocol="ESMTPS",
        queue_id="0ABC",
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
        recipients=(Address("bob", "example.test"),),
        now=NOW,
    )
    assert header == (
        b"Received: from client.example.org ([192.0.2.7])\r\n"
        b"\tby mx.example.test (Postier) with ESMTPS id 0ABC\r\n"
        b"\t(using TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n"
        b"\tfor <bob@example.test>; Sun, 29 Nov 2026 06:40:20 +0000\r\n"
    )


def test_many_recipients_are_not_listed_and_ipv6_is_a_literal() -> None:
    header = received_header(
        helo="",
        client_ip="2001:db8::1",
        hostname="mx",
        protocol="ESMTP",
        queue_id="X",
        tls=None,
        recipients=(Address("a", "x.test"), Address("b", "x.test")),
        now=NOW,
    )
    assert header.startswith(
        b"Received: from unknown ([IPv6:2001:db8::1])\r\n\tby mx (Postier) with ESMTP id X;"
    )
    assert b"a@x.test" not in header


def test_hostile_helo_cannot_break_the_header() -> None:
    header = received_header(
        helo="evil\r\nBcc: victim@example.org (x)",
        client_ip="192.0.2.1",
        hostname="mx",
        protocol="ESMTP",
        queue_id="X",
        tls=None,
        recipients=(),
        now=NOW,
    )
    first = header.split(b"\r\n")[0]
    assert b"Bcc" in first  # kept visible on the first line, not a header of its own
    assert header.count(b"\r\n") == 3
    assert b"\n" not in header.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    ("message", "hops"),
    [
        (b"", 0),
        (b"Received: a\r\nRECEIVED: b\r\n\tfolded\r\nX-Received: no\r\n\r\nReceived: in the body\r\n", 2),
        (b"\r\nReceived: no header at all\r\n", 0),
        (b"Subject: x\nReceived: bare LF lines count too\n\nbody", 1),
        (b"Received: without an end", 1),
    ],
)
def test_hop_count_counts_received_fields_of_the_header_only(message: bytes, hops: int) -> None:
    assert hop_count(Message(message).header) == hops


@pytest.mark.parametrize(
    ("recipient", "shown"),
    [
        (Address("alice", "bücher.example"), b"for <alice@xn--bcher-kva.example>;"),
        (Address("jörg", "bücher.example"), "for <jörg@bücher.example>;".encode()),
        (Address("bob", "example.test"), b"for <bob@example.test>;"),
    ],
)
def test_the_for_address_stays_ascii_when_it_can(recipient: Address, shown: bytes) -> None:
    """A U-label domain is written as its A-label, so a message whose envelope is ASCII after
    expansion does not need SMTPUTF8 for a header Postier added; a UTF-8 local part cannot be."""
    header = received_header(
        helo="c",
        client_ip="192.0.2.7",
        hostname="mx",
        protocol="UTF8SMTP",
        queue_id="Q",
        tls=None,
        recipients=(recipient,),
        now=NOW,
    )
    assert shown in header


def test_the_date_follows_the_clock_across_seconds_and_offsets() -> None:
    def date_of(now: datetime) -> str:
        header = received_header(
            helo="c",
            client_ip="192.0.2.1",
            hostname="mx",
            protocol="ESMTP",
            queue_id="X",
            tls=None,
            recipients=(),
            now=now,
        )
        return header.decode().rsplit("\t", 1)[1].strip()

    later = NOW + timedelta(seconds=1, microseconds=500)
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert date_of(NOW) == "Sun, 29 Nov 2026 06:40:20 +0000"
    assert date_of(NOW.replace(microsecond=999_999)) == "Sun, 29 Nov 2026 06:40:20 +0000"
    assert date_of(later) == "Sun, 29 Nov 2026 06:40:21 +0000"
    assert date_of(NOW) == "Sun, 29 Nov 2026 06:40:20 +0000"
    assert date_of(paris) == "Sun, 29 Nov 2026 07:40:20 +0100"
