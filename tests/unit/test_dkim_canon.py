"""RFC 6376 §3.4 relaxed canonicalisation, table-driven (the RFC's own example of §3.4.5 first)."""

from __future__ import annotations

import pytest

from postier.mailauth.dkim.canon import header_fields, relaxed_body, relaxed_header, split_message

RFC_EXAMPLE = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"


def test_rfc_6376_section_3_4_5_example() -> None:
    header, body = split_message(RFC_EXAMPLE)
    fields = header_fields(header)
    assert [relaxed_header(raw) for _, raw in fields] == [b"a:X", b"b:Y Z"]
    assert relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n\r\n", b""),
        (b"text\r\n", b"text\r\n"),
        (b"text", b"text\r\n"),
        (b"text\r\n\r\n\r\n", b"text\r\n"),
        (b"a  b\t\tc \t\r\n", b"a b c\r\n"),
        (b" \r\n", b""),
        (b"line\r\n \t \r\n", b"line\r\n"),
        (b"\t lead\r\n", b" lead\r\n"),
        (b"caf\xc3\xa9  8bit \r\n", b"caf\xc3\xa9 8bit\r\n"),
        (b"x" * 2000 + b"\r\n", b"x" * 2000 + b"\r\n"),
    ],
)
def test_relaxed_body(body: bytes, expected: bytes) -> None:
    assert relaxed_body(body) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (b"Subject: Hello", b"subject:Hello"),
        (b"SUBJECT :  Hello   world  ", b"subject:Hello world"),
        (b"Subject: one\r\n two\r\n\tthree", b"subject:one two three"),
        (b"To:\r\n bob@example.org", b"to:bob@example.org"),
        (b"Subject: =?utf-8?q?x?=  \xc3\xa9t\xc3\xa9", b"subject:=?utf-8?q?x?= \xc3\xa9t\xc3\xa9"),
        (b"X-Empty:", b"x-empty:"),
    ],
)
def test_relaxed_header(field: bytes, expected: bytes) -> None:
    assert relaxed_header(field) == expected


def test_split_and_fields() -> None:
    header, body = split_message(b"From: a\r\nSubject: x\r\n y\r\n\r\nbody\r\n")
    assert body == b"body\r\n"
    assert header_fields(header) == [(b"from", b"From: a"), (b"subject", b"Subject: x\r\n y")]
    assert split_message(b"\r\nonly body\r\n") == (b"", b"only body\r\n")
    assert split_message(b"Subject: no body\r\n") == (b"Subject: no body\r\n", b"")
