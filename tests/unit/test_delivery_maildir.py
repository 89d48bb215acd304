"""The Maildir writer: exact bytes, the added headers, unique names, safe mailbox paths."""

from __future__ import annotations

import os
import random
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.delivery.maildir import deliver_to_maildir, mailbox_name
from postier.mail.address import Address

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
BODY = b"Subject: hi\r\nFrom: <a@example.org>\r\n\r\nline one\r\n.dot\r\n\xff\x00binary\r\n"


def clock() -> datetime:
    return T0


def deliver(root: Path, address: Address, body: bytes = BODY, return_path: str = "a@example.org") -> Path:
    return deliver_to_maildir(
        root, address, body, return_path=return_path, hostname="mx.test", clock=clock, rng=random.Random(1)
    )


def test_exact_bytes_with_added_headers(tmp_path: Path) -> None:
    path = deliver(tmp_path, Address("Bob", "Example.ORG"))
    assert path.parent == tmp_path / "example.org" / "bob" / "new"
    assert path.read_bytes() == (
        b"Return-Path: <a@example.org>\r\nDelivered-To: <Bob@Example.ORG>\r\n" + BODY
    )
    assert list((tmp_path / "example.org" / "bob" / "tmp").iterdir()) == []


def test_null_sender_gives_empty_return_path(tmp_path: Path) -> None:
    path = deliver(tmp_path, Address("bob", "example.org"), b"x\r\n", return_path="")
    assert path.read_bytes().startswith(b"Return-Path: <>\r\n")


def test_maildir_layout_and_modes(tmp_path: Path) -> None:
    deliver(tmp_path, Address("bob", "example.org"))
    mailbox = tmp_path / "example.org" / "bob"
    for sub in ("tmp", "new", "cur"):
        assert stat.S_IMODE((mailbox / sub).stat().st_mode) == 0o700


def test_names_are_unique_and_follow_the_scheme(tmp_path: Path) -> None:
    # Same clock instant every time: the counter (and pid) still make names unique.
    paths = {deliver(tmp_path, Address("bob", "example.org")) for _ in range(20)}
    assert len(paths) == 20
    pattern = re.compile(rf"{int(T0.timestamp())}\.M123456P{os.getpid()}Q\d+\.mx\.test")
    assert all(pattern.fullmatch(p.name) for p in paths)


def test_hostname_slash_and_colon_are_escaped(tmp_path: Path) -> None:
    path = deliver_to_maildir(
        tmp_path, Address("bob", "x.test"), b"m", return_path="", hostname="a/b:c",
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


def test_unsafe_local_part_stays_under_root(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    path = deliver(root, Address('"../../evil"', "example.org"))
    assert path.resolve().is_relative_to(root.resolve())
    assert path.parent.parent.name == "___.._evil"


def test_idn_domain_is_stored_under_its_a_label(tmp_path: Path) -> None:
    path = deliver(tmp_path, Address("bob", "bücher.example"))
    assert path.parent.parent.parent.name == "xn--bcher-kva.example"


def test_disk_error_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "example.org"
    blocker.write_bytes(b"not a directory")  # the domain directory cannot be made
    with pytest.raises(OSError):
        deliver(tmp_path, Address("bob", "example.org"))
