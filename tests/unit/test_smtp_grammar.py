"""MAIL/RCPT arguments, ESMTP parameters, xtext, BDAT and HELO arguments."""

from __future__ import annotations

import pytest

from postier.mail.address import Address
from postier.mail.envelope import BodyType, Notify, Ret
from postier.mail.errors import RemoteProtocolError
from postier.smtp.grammar import (
    parse_bdat,
    parse_hello,
    parse_mail,
    parse_rcpt,
    split_command,
    xtext_decode,
    xtext_encode,
)
from postier.smtp.server.events import MailParams

MAIL_OK = [
    (b"FROM:<a@example.org>", Address("a", "example.org"), MailParams()),
    (b"from:<a@example.org>", Address("a", "example.org"), MailParams()),
    (b"FROM: <a@example.org>", Address("a", "example.org"), MailParams()),  # lenient space
    (b"FROM:<>", None, MailParams()),
    (b"FROM:<> SIZE=0", None, MailParams(size=0)),
    (b"FROM:<a@b> SIZE=1000", Address("a", "b"), MailParams(size=1000)),
    (b"FROM:<a@b> BODY=7BIT", Address("a", "b"), MailParams(body=BodyType.SEVEN_BIT)),
    (b"FROM:<a@b> body=8bitmime", Address("a", "b"), MailParams(body=BodyType.EIGHT_BIT_MIME)),
    (b"FROM:<a@b> BODY=BINARYMIME", Address("a", "b"), MailParams(body=BodyType.BINARY_MIME)),
    (b"FROM:<a@b> SMTPUTF8", Address("a", "b"), MailParams(smtputf8=True)),
    (b"FROM:<a@b> RET=FULL", Address("a", "b"), MailParams(ret=Ret.FULL)),
    (b"FROM:<a@b> RET=hdrs", Address("a", "b"), MailParams(ret=Ret.HDRS)),
    (b"FROM:<a@b> ENVID=QQ+2B1+3D", Address("a", "b"), MailParams(envid="QQ+1=")),
    (b"FROM:<a@b> AUTH=<>", Address("a", "b"), MailParams(auth="<>")),
    (b"FROM:<a@b> AUTH=e+2Bf@example.org", Address("a", "b"), MailParams(auth="e+f@example.org")),
    (b"FROM:<a@b>  SIZE=5", Address("a", "b"), MailParams(size=5)),  # doubled space tolerated
    (
        "FROM:<δ@παράδειγμα.δοκιμή> SMTPUTF8".encode(),
        Address("δ", "παράδειγμα.δοκιμή"),
        MailParams(smtputf8=True),
    ),
]


@pytest.mark.parametrize(("arg", "sender", "params"), MAIL_OK)
def test_mail_arguments_parse(arg: bytes, sender: Address | None, params: MailParams) -> None:
    assert parse_mail(arg, max_message_bytes=1000) == (sender, params)


MAIL_BAD = [
    (b"FROM:<a@b> SIZE=1001", 552, "5.3.4"),  # RFC 1870: over the limit at MAIL time
    (b"FROM:<a@b> SIZE=", 501, "5.5.4"),
    (b"FROM:<a@b> SIZE=-1", 501, "5.5.4"),
    (b"FROM:<a@b> SIZE=1e3", 501, "5.5.4"),
    (b"FROM:<a@b> SIZE", 501, "5.5.4"),
    (b"FROM:<a@b> BODY=BINARY", 501, "5.5.4"),
    (b"FROM:<a@b> RET=NONE", 501, "5.5.4"),
    (b"FROM:<a@b> ENVID=a+2", 501, "5.5.4"),
    (b"FROM:<a@b> ENVID=" + b"x" * 101, 501, "5.5.4"),
    (b"FROM:<a@b> AUTH=a+zz", 501, "5.5.4"),
    (b"FROM:<a@b> SMTPUTF8=1", 501, "5.5.4"),
    (b"FROM:<a@b> XFOO", 555, "5.5.4"),
    (b"FROM:<a@b> XFOO=1", 555, "5.5.4"),
    (b"FROM:<a@b> NOTIFY=NEVER", 555, "5.5.4"),  # an RCPT parameter
    (b"FROM:<a@b> SIZE=1 size=2", 555, "5.5.4"),  # duplicated
    (b"FROM:<a@b> =x", 501, "5.5.2"),
    (b"FROM:<a@b>SIZE=1", 501, "5.1.7"),
    (b"FROM:a@b", 501, "5.1.7"),
    (b"FROM:<a@b", 501, "5.1.7"),
    (b"FROM<a@b>", 501, "5.5.2"),
    (b"TO:<a@b>", 501, "5.5.2"),
    (b"", 501, "5.5.2"),
    (b"FROM:<a@b@>", 501, "5.1.7"),
    (b"FROM:<\xff@b>", 501, "5.1.7"),  # not UTF-8
    ("FROM:<δ@example.org>".encode(), 553, "5.6.7"),
]


@pytest.mark.parametrize(("arg", "code", "status"), MAIL_BAD)
def test_mail_argument_errors(arg: bytes, code: int, status: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_mail(arg, max_message_bytes=1000)
    assert (caught.value.reply.code, str(caught.value.reply.status)) == (code, status)


RCPT_OK = [
    (b"TO:<b@example.org>", None, None),
    (b"to: <b@example.org>", None, None),
    (b"TO:<b@x> NOTIFY=NEVER", frozenset({Notify.NEVER}), None),
    (b"TO:<b@x> NOTIFY=success,failure", frozenset({Notify.SUCCESS, Notify.FAILURE}), None),
    (b"TO:<b@x> NOTIFY=DELAY", frozenset({Notify.DELAY}), None),
    (b"TO:<b@x> ORCPT=rfc822;b+40x", None, "rfc822;b@x"),
    (b"TO:<b@x> ORCPT=utf-8;b@x NOTIFY=FAILURE", frozenset({Notify.FAILURE}), "utf-8;b@x"),
]


@pytest.mark.parametrize(("arg", "notify", "orcpt"), RCPT_OK)
def test_rcpt_arguments_parse(arg: bytes, notify: frozenset[Notify] | None, orcpt: str | None) -> None:
    recipient = parse_rcpt(arg, allow_utf8=False)
    assert (recipient.notify, recipient.orcpt) == (notify, orcpt)


RCPT_BAD = [
    (b"TO:<b@x> NOTIFY=NEVER,DELAY", 501, "5.5.4"),
    (b"TO:<b@x> NOTIFY=FAILURE,FAILURE", 501, "5.5.4"),
    (b"TO:<b@x> NOTIFY=", 501, "5.5.4"),
    (b"TO:<b@x> NOTIFY", 501, "5.5.4"),
    (b"TO:<b@x> NOTIFY=ALWAYS", 501, "5.5.4"),
    (b"TO:<b@x> ORCPT=rfc822", 501, "5.5.4"),
    (b"TO:<b@x> ORCPT=;b@x", 501, "5.5.4"),
    (b"TO:<b@x> ORCPT=rfc822;", 501, "5.5.4"),
    (b"TO:<b@x> ORCPT=rfc822;b+4", 501, "5.5.4"),
    (b"TO:<b@x> SIZE=10", 555, "5.5.4"),
    (b"TO:<b@x> NOTIFY=NEVER NOTIFY=NEVER", 555, "5.5.4"),
    (b"TO:<>", 501, "5.1.3"),
    (b"TO:b@x", 501, "5.1.3"),
    (b"FROM:<b@x>", 501, "5.5.2"),
    ("TO:<ü@x>".encode(), 553, "5.6.7"),
]


@pytest.mark.parametrize(("arg", "code", "status"), RCPT_BAD)
def test_rcpt_argument_errors(arg: bytes, code: int, status: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_rcpt(arg, allow_utf8=False)
    assert (caught.value.reply.code, str(caught.value.reply.status)) == (code, status)


@pytest.mark.parametrize(
    ("text", "decoded"),
    [("", ""), ("plain", "plain"), ("a+2Bb", "a+b"), ("+3D+20", "= "), ("+2b", "+"), ("~!", "~!")],
)
def test_xtext_decodes(text: str, decoded: str) -> None:
    assert xtext_decode(text) == decoded


@pytest.mark.parametrize("text", ["a b", "a=b", "a+", "a+2", "a+zz", "é"])
def test_xtext_refuses_what_is_not_xtext(text: str) -> None:
    with pytest.raises(ValueError, match="xtext"):
        xtext_decode(text)


@pytest.mark.parametrize("text", ["", "a+b=c d", "user@example.org", "\x01\x7f"])
def test_xtext_round_trips(text: str) -> None:
    assert xtext_decode(xtext_encode(text)) == text


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (b"0 LAST", (0, True)),
        (b"10", (10, False)),
        (b"10 last", (10, True)),
        (b"", None),
        (b"x", None),
        (b"-1", None),
        (b"10 LAST x", None),
        (b"10 FIRST", None),
        (b"1" * 21, None),
    ],
)
def test_bdat_arguments(arg: bytes, expected: tuple[int, bool] | None) -> None:
    assert parse_bdat(arg) == expected


@pytest.mark.parametrize(
    ("arg", "name", "well_formed"),
    [
        (b"mail.example.org", "mail.example.org", True),
        (b"[192.0.2.1]", "[192.0.2.1]", True),
        (b"[IPv6:::1]", "[IPv6:::1]", True),
        (b"bare_host", "bare_host", False),  # odd but printable: accepted and flagged
        (b"[not-an-ip]", "[not-an-ip]", False),
        (b"host extra words", "host", False),
    ],
)
def test_hello_names(arg: bytes, name: str, well_formed: bool) -> None:
    assert parse_hello(arg) == (name, well_formed)


@pytest.mark.parametrize("arg", [b"", b"   ", b"bad\x01name", b"\xff"])
def test_hello_needs_a_printable_name(arg: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        parse_hello(arg)
    assert (caught.value.reply.code, str(caught.value.reply.status)) == (501, "5.5.2")


@pytest.mark.parametrize(
    ("line", "verb", "arg"),
    [(b"ehlo x", "EHLO", b"x"), (b"QUIT", "QUIT", b""), (b"M4IL x", "", b"x"), (b"", "", b"")],
)
def test_split_command(line: bytes, verb: str, arg: bytes) -> None:
    assert split_command(line) == (verb, arg)
