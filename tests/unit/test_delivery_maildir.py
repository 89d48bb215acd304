"""The Maildir writer: exact bytes, the added headers, unique names, safe mailbox names, the quota."""

from __future__ import annotations

import os
import random
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.delivery.maildir import MailboxFullError, deliver_to_maildir, mailbox_name, mailbox_size

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
BODY = b"Subject: hi\r\nFrom: <a@example.org>\r\n\r\nline one\r\n.dot\r\n\xff\x00binary\r\n"


def clock() -> datetime:
    return T0


def deliver(
    maildir: Path, body: bytes = BODY, return_path: str = "a@example.org", *, quota_bytes: int = 0
) -> Path:
    return deliver_to_maildir(
        maildir, body, return_path=return_path, delivered_to="bob@example.org", hostname="mx.test",
        clock=clock, rng=random.Random(1), quota_bytes=quota_bytes,
    )  # fmt: skip


def test_exact_bytes_with_added_headers(tmp_path: Path) -> None:
    maildir = tmp_path / "example.org" / "bob"
    path = deliver(maildir)
    assert path.parent == maildir / "new"
    assert path.read_bytes() == (
        b"Return-Path: <a@example.org>\r\nDelivered-To: <bob@example.org>\r\n" + BODY
    )
    assert list((maildir / "tmp").iterdir()) == []


def test_null_sender_gives_empty_return_path(tmp_path: Path) -> None:
    path = deliver(tmp_path / "bob", b"x\r\n", return_path="")
    assert path.read_bytes().startswith(b"Return-Path: <>\r\n")


def test_maildir_layout_and_modes(tmp_path: Path) -> None:
    mailbox = tmp_path / "example.org" / "bob"
    deliver(mailbox)
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((mailbox / sub).stat().st_mode) == 0o700


def test_names_are_unique_and_follow_the_scheme(tmp_path: Path) -> None:
    # Same clock instant every time: the counter (and pid) still make names unique.
    paths = {deliver(tmp_path / "bob") for _ in range(20)}
    assert len(paths) == 20
    pattern = re.compile(rf"{int(T0.timestamp())}\.M123456P{os.getpid()}Q\d+\.mx\.test")
    assert all(pattern.fullmatch(p.name) for p in paths)


def test_hostname_slash_and_colon_are_escaped(tmp_path: Path) -> None:
    path = deliver_to_maildir(
        tmp_path / "bob", b"m", return_path="", delivered_to="bob@x.test", hostname="a/b:c",
        clock=clock, rng=random.Random(1),
    )  # fmt: skip
    assert path.name.endswith(".a\\057b\\072c")


@pytest.mark.parametrize(
    ("local_part", "expected"),
    [
        ("Alice", "alice"),
        ("a.b+tag", "a.b+tag"),
        ("..", "__"),
        (".hidden", "_hidden"),
        ('"../../etc"', "___.._etc"),
        ('"a/b"', "a_b"),
        ('"x\\"y"', 'x"y'),
        ('"nul\\\x00"', "nul_"),
        ('""', "_"),
    ],
)
def test_unsafe_local_parts_become_safe_names(local_part: str, expected: str) -> None:
    assert mailbox_name(local_part) == expected


def test_disk_error_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "example.org"
    blocker.write_bytes(b"not a directory")  # the Maildir cannot be made
    with pytest.raises(OSError):
        deliver(blocker / "bob")


def test_mailbox_size_counts_new_and_cur_not_tmp(tmp_path: Path) -> None:
    maildir = tmp_path / "bob"
    assert mailbox_size(maildir) == 0  # not made yet
    first = deliver(maildir)
    (maildir / "cur" / "seen:2,S").write_bytes(b"x" * 100)
    (maildir / "tmp" / "half-written").write_bytes(b"y" * 1000)
    assert mailbox_size(maildir) == first.stat().st_size + 100


def test_quota_fits_exactly_then_refuses_without_writing(tmp_path: Path) -> None:
    maildir = tmp_path / "bob"
    one = len(deliver(maildir).read_bytes())
    # Room for exactly one more message of this size: it fits; the third does not.
    deliver(maildir, quota_bytes=2 * one)
    with pytest.raises(MailboxFullError) as caught:
        deliver(maildir, quota_bytes=2 * one)
    assert (caught.value.size, caught.value.quota_bytes) == (3 * one, 2 * one)
    assert len(list((maildir / "new").iterdir())) == 2
    assert list((maildir / "tmp").iterdir()) == []


def test_a_message_larger_than_the_quota_never_fits(tmp_path: Path) -> None:
    with pytest.raises(MailboxFullError):
        deliver(tmp_path / "bob", b"z" * 500, quota_bytes=400)
    assert not (tmp_path / "bob" / "new").exists() or not list((tmp_path / "bob" / "new").iterdir())
