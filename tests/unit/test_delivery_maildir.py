"""The Maildir writer: exact bytes, the added headers, unique names, safe mailbox names, the quota."""

from __future__ import annotations

import os
import random
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.delivery.local import MaildirCourier
from postier.delivery.maildir import MailboxFullError, deliver_to_maildir, mailbox_name, mailbox_size
from postier.delivery.transport import Destination, DestinationKind, Hop, OutboundMessage
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.mail.replies import S
from postier.recipients.directory import LocalDirectory
from postier.users import UserStore

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
    # Return-Path holds a path, in angle brackets (RFC 5322 §3.6.7); Delivered-To a bare address,
    # as qmail, Postfix and Dovecot write it (RFC 9228), so filters that match it as text work.
    assert path.read_bytes() == (b"Return-Path: <a@example.org>\r\nDelivered-To: bob@example.org\r\n" + BODY)
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


# --- MaildirCourier: one Attempt per recipient -------------------------------------------------------


def courier_for(tmp_path: Path, quota_bytes: int = 0) -> tuple[MaildirCourier, LocalDirectory]:
    users = UserStore(tmp_path / "users.json", time_cost=1, memory_cost=8192, parallelism=1)
    users.add("bob@example.org", "pw")
    users.add("carol@example.org", "pw")
    directory = LocalDirectory(
        local_domains=["example.org"],
        users=users,
        mailbox_root=tmp_path,
        quota_bytes=quota_bytes,
        mailbox_size=mailbox_size,
        size_cache_s=0.0,
    )
    return MaildirCourier(directory, hostname="mx.test", clock=clock, rng=random.Random(1)), directory


MAILDIR_DESTINATION = Destination("maildir:example.org", DestinationKind.MAILDIR, "example.org", ())


def outbound(body: bytes = BODY) -> OutboundMessage:
    sender = Address("a", "example.net")
    return OutboundMessage("Q1", Envelope(sender, (Recipient(Address("bob", "example.org")),)), body)


async def test_courier_delivers_each_recipient(tmp_path: Path) -> None:
    courier, directory = courier_for(tmp_path)
    recipients = [Recipient(Address("bob", "example.org")), Recipient(Address("Carol", "example.org"))]
    attempts = await courier.deliver(MAILDIR_DESTINATION, outbound(), recipients)
    assert [(a.recipient, a.reply) for a in attempts] == [(r, S.DELIVERED_TO_MAILDIR) for r in recipients]
    [carol] = (directory.maildir_for(Address("carol", "example.org")) / "new").iterdir()
    assert carol.read_bytes() == b"Return-Path: <a@example.net>\r\nDelivered-To: Carol@example.org\r\n" + BODY
    await courier.close()


async def test_courier_refuses_what_is_no_mailbox(tmp_path: Path) -> None:
    courier, _ = courier_for(tmp_path)
    recipients = [Recipient(Address("gone", "example.org")), Recipient(Address("bob", "example.org"))]
    attempts = await courier.deliver(MAILDIR_DESTINATION, outbound(), recipients)
    assert [a.reply for a in attempts] == [S.UNKNOWN_USER, S.DELIVERED_TO_MAILDIR]
    assert not (tmp_path / "mail" / "example.org" / "gone").exists()


async def test_courier_quota_gives_552_and_disk_errors_451(tmp_path: Path) -> None:
    courier, directory = courier_for(tmp_path, quota_bytes=len(BODY) + 100)
    bob = [Recipient(Address("bob", "example.org"))]
    [first] = await courier.deliver(MAILDIR_DESTINATION, outbound(), bob)
    [second] = await courier.deliver(MAILDIR_DESTINATION, outbound(), bob)
    assert (first.reply, second.reply) == (S.DELIVERED_TO_MAILDIR, S.MAILBOX_OVER_QUOTA)
    assert str(second.reply).startswith("552 5.2.2 ")

    carol_dir = directory.maildir_for(Address("carol", "example.org"))
    carol_dir.parent.mkdir(parents=True, exist_ok=True)
    carol_dir.write_bytes(b"in the way")  # the Maildir cannot be made
    [broken] = await courier.deliver(
        MAILDIR_DESTINATION, outbound(), [Recipient(Address("carol", "example.org"))]
    )
    assert broken.reply == S.MAILBOX_WRITE_ERROR and str(broken.reply).startswith("451 4.3.0 ")


async def test_courier_only_takes_maildir_destinations(tmp_path: Path) -> None:
    courier, _ = courier_for(tmp_path)
    lmtp = Destination("lmtp:x", DestinationKind.LMTP, "example.org", (Hop("127.0.0.1", 24),))
    with pytest.raises(ValueError, match="lmtp"):
        await courier.deliver(lmtp, outbound(), [Recipient(Address("bob", "example.org"))])


def test_new_maildir_directories_are_made_durable(tmp_path: Path) -> None:
    """A directory entry is durable only once its parent is fsync'd: a Maildir made by this delivery
    (and the domain directory above it) must not vanish after a power cut along with the message."""
    synced: list[Path] = []
    maildir = tmp_path / "mail" / "example.org" / "bob"

    def run() -> Path:
        return deliver_to_maildir(
            maildir, BODY, return_path="a@example.org", delivered_to="bob@example.org",
            hostname="mx.test", clock=clock, rng=random.Random(1), sync_dir=synced.append,
        )  # fmt: skip

    run()
    root = tmp_path
    assert sorted(synced) == sorted(
        [root, root / "mail", root / "mail" / "example.org", maildir, maildir / "new"]
    )
    synced.clear()
    run()
    assert synced == [maildir / "new"]  # nothing made: only the rename is synced
