"""LocalDirectory: RCPT-time verdicts and expansion to final targets, table-driven."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from postier.config import parse_config
from postier.mail.address import POSTMASTER, Address, parse_forward_path
from postier.mail.envelope import Notify, Recipient
from postier.mail.errors import ConfigError
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.recipients.aliases import parse_aliases
from postier.recipients.directory import LocalDirectory
from postier.users import UserStore

FAST = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
USERS = ("alice@example.org", "Bob@example.org", "carol@bücher.example", "dave@elsewhere.test")
ALIASES = """\
info: alice, bob
sales@example.org: carol@bücher.example, partner@remote.test
team@example.org: info, dave@elsewhere.test, alice
alice@example.org: alice, alice@backup.test
loop1@example.org: loop2
loop2@example.org: loop3
loop3@example.org: loop1
selfish@example.org: selfish
ghost@example.org: nobody, Bob
allghost@example.org: nobody
root@example.org: postmaster
pmloop@example.org: postmaster
postmaster@bücher.example: carol
"""


class Sizes:
    """A fake ``mailbox_size``: sizes by Maildir, counting the calls."""

    def __init__(self) -> None:
        self.sizes: dict[Path, int] = {}
        self.calls = 0

    def __call__(self, maildir: Path) -> int:
        self.calls += 1
        return self.sizes.get(maildir, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> UserStore:
    users = UserStore(tmp_path_factory.mktemp("users") / "users.json", **FAST)  # type: ignore[arg-type]
    for address in USERS:
        users.add(address, "pw")
    return users


def make(store: UserStore, root: Path = Path("/data"), **kwargs: object) -> LocalDirectory:
    options: dict[str, object] = {
        "local_domains": ["Example.ORG", "bücher.example", "localhost"],
        "users": store,
        "mailbox_root": root,
        "aliases": parse_aliases(ALIASES),
        "catch_all": {"localhost": "alice@example.org"},
        **kwargs,
    }
    return LocalDirectory(**options)  # type: ignore[arg-type]


def rcpt(text: str) -> Address:
    return parse_forward_path(f"<{text}>", allow_utf8=True)


CHECKS: list[tuple[str, Reply | None]] = [
    ("alice@example.org", None),
    ("ALICE@Example.ORG", None),  # local parts compared case-insensitively (RFC 5321 §2.4)
    ("bob@example.org", None),  # the user is Bob@example.org
    ("nobody@example.org", S.UNKNOWN_USER),
    ('"alice"@example.org', None),  # the same mailbox, quoted
    ("carol@bücher.example", None),  # IDN: U-label …
    ("carol@xn--bcher-kva.example", None),  # … and A-label are one domain
    ("carol@BÜCHER.example", None),
    ("carol@XN--BCHER-KVA.example", None),
    ("info@example.org", None),  # alias → alice, Bob
    ("info@bücher.example", S.UNKNOWN_USER),  # alias in every domain, but alice@ / bob@bücher do not exist
    ("sales@example.org", None),
    ("team@example.org", None),  # nested alias
    ("loop1@example.org", S.UNKNOWN_USER),  # loop1 → loop2 → loop3 → loop1
    ("selfish@example.org", S.UNKNOWN_USER),  # points at itself and is no user
    ("ghost@example.org", None),  # one target unknown, one known
    ("allghost@example.org", S.UNKNOWN_USER),
    ("alice+news@example.org", None),  # sub-addressing
    ("info+x@example.org", None),  # sub-addressing of an alias
    ("nobody+news@example.org", S.UNKNOWN_USER),
    ("+news@example.org", S.UNKNOWN_USER),
    ("anyone@localhost", None),  # catch-all
    ("postmaster@example.org", None),  # RFC 5321 §4.5.1: always
    ("PostMaster@bücher.example", None),
    ("postmaster@localhost", None),
    ("Postmaster", None),  # the bare <Postmaster>
    ("pmloop@example.org", None),
    ("stranger@remote.test", None),  # not local: relay policy decides
    ("dave@elsewhere.test", None),
    ("alice@[192.0.2.1]", None),  # address literals are never local
]


@pytest.mark.parametrize(("address", "verdict"), CHECKS, ids=[a for a, _ in CHECKS])
def test_check(store: UserStore, address: str, verdict: Reply | None) -> None:
    assert make(store).check(rcpt(address)) == verdict


EXPANSIONS: list[tuple[str, list[str]]] = [
    ("Bob@example.org", ["Bob@example.org"]),  # unchanged: no ORCPT added
    ("bob@example.org", ["Bob@example.org"]),
    ("info@example.org", ["alice@example.org", "alice@backup.test", "Bob@example.org"]),
    ("alice@example.org", ["alice@example.org", "alice@backup.test"]),  # "alice: alice, …" keeps a copy
    ("sales@example.org", ["carol@xn--bcher-kva.example", "partner@remote.test"]),
    (
        "team@example.org",
        ["alice@example.org", "alice@backup.test", "Bob@example.org", "dave@elsewhere.test"],
    ),
    ("ghost@example.org", ["Bob@example.org"]),
    ("alice+news@example.org", ["alice@example.org", "alice@backup.test"]),
    ("zed@localhost", ["alice@example.org", "alice@backup.test"]),
    ("Postmaster", ["postmaster@example.org"]),  # the first local domain
    ("postmaster@localhost", ["postmaster@localhost"]),
    ("postmaster@bücher.example", ["carol@xn--bcher-kva.example"]),  # an alias for it is used
    ("root@example.org", ["postmaster@example.org"]),
    ("stranger@remote.test", ["stranger@remote.test"]),
    ("loop1@example.org", ["loop1@example.org"]),  # unknown now (config changed since RCPT): kept
]


@pytest.mark.parametrize(("address", "targets"), EXPANSIONS, ids=[a for a, _ in EXPANSIONS])
def test_expand(store: UserStore, address: str, targets: list[str]) -> None:
    original = rcpt(address)
    given = Recipient(original, frozenset({Notify.SUCCESS, Notify.FAILURE}))
    expanded = make(store).expand([given])
    assert [str(r.address) for r in expanded] == targets
    for r in expanded:
        assert r.notify == given.notify
        kind = "rfc822" if str(original).isascii() else "utf-8"  # RFC 6533 §3
        assert r.orcpt == (None if r.address == original else f"{kind};{original}")


def test_expand_deduplicates_and_keeps_the_first(store: UserStore) -> None:
    alice = Recipient(rcpt("alice@backup.test"), orcpt="rfc822;me@example.net")
    expanded = make(store).expand(
        [alice, Recipient(rcpt("info@example.org")), Recipient(rcpt("BOB@example.org"))]
    )
    assert [str(r.address) for r in expanded] == ["alice@backup.test", "alice@example.org", "Bob@example.org"]
    assert expanded[0] is alice  # untouched, its own ORCPT kept
    assert expanded[2].orcpt == "rfc822;info@example.org"


def test_client_orcpt_is_kept(store: UserStore) -> None:
    given = Recipient(rcpt("info@example.org"), None, "rfc822;old@example.com")
    assert {r.orcpt for r in make(store).expand([given])} == {"rfc822;old@example.com"}


def test_utf8_original_gets_a_utf8_orcpt(store: UserStore) -> None:
    [carol] = make(store).expand([Recipient(rcpt("carol+x@bücher.example"))])
    assert (str(carol.address), carol.orcpt) == (
        "carol@xn--bcher-kva.example",
        "utf-8;carol+x@bücher.example",
    )


def test_loop_is_logged(store: UserStore, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="postier.users"):
        make(store).check(rcpt("loop2@example.org"))
    [message] = [r.getMessage() for r in caplog.records]
    assert "loop" in message and "loop2@example.org -> loop3@example.org -> loop1@example.org" in message


@pytest.mark.parametrize(
    ("postmaster", "address", "targets"),
    [
        ("alice@example.org", "Postmaster", ["alice@example.org", "alice@backup.test"]),
        ("alice@example.org", "postmaster@bücher.example", ["alice@example.org", "alice@backup.test"]),
        ("hostmaster@remote.test", "postmaster@localhost", ["hostmaster@remote.test"]),
        ("nobody@example.org", "postmaster@localhost", ["postmaster@localhost"]),  # falls back
        ("pmloop@example.org", "postmaster@example.org", ["postmaster@example.org"]),  # a loop too
    ],
)
def test_configured_postmaster(store: UserStore, postmaster: str, address: str, targets: list[str]) -> None:
    directory = make(store, postmaster=postmaster)
    assert directory.check(rcpt(address)) is None
    assert [str(r.address) for r in directory.expand([Recipient(rcpt(address))])] == targets


@pytest.mark.parametrize(
    ("delimiter", "address", "verdict"),
    [
        ("", "alice+news@example.org", S.UNKNOWN_USER),
        ("+-", "alice-news@example.org", None),
        ("+-", "alice+news-x@example.org", None),
        ("-", "alice+news@example.org", S.UNKNOWN_USER),
    ],
)
def test_recipient_delimiter(store: UserStore, delimiter: str, address: str, verdict: Reply | None) -> None:
    assert make(store, recipient_delimiter=delimiter).check(rcpt(address)) == verdict


@pytest.mark.parametrize(
    ("delimiter", "address", "target"),
    [
        ("+", "a+b@example.org", "a+b@example.org"),  # the whole local part first (as Postfix)
        ("+", "A+B@example.org", "a+b@example.org"),
        ("+", "a+c@example.org", "a@example.org"),
        ("+", "a+b+c@example.org", "a@example.org"),  # then cut at the first delimiter only
        ("+", "a-b@example.org", "nobody@localhost"),  # "-" is no delimiter here: the catch-all
        ("+-", "a-b@example.org", "a@example.org"),
        ("+-", "a+b@example.org", "a+b@example.org"),
        ("+-", "a-x+y@example.org", "a@example.org"),  # the first delimiter character found
        ("-", "john-doe@example.org", "john-doe@example.org"),
        ("-", "john-doe-news@example.org", "nobody@localhost"),  # john does not exist
        ("-", "a+b-news@example.org", "a+b@example.org"),
        ("+", "list+owner@example.org", "a@example.org"),  # an alias named with the delimiter
        ("+", "list+other@example.org", "a+b@example.org"),  # list+other → alias list
    ],
)
def test_a_name_that_contains_the_delimiter_is_matched_whole_first(
    tmp_path: Path, delimiter: str, address: str, target: str
) -> None:
    users = UserStore(tmp_path / "users.json", **FAST)  # type: ignore[arg-type]
    for name in ("a@example.org", "a+b@example.org", "john-doe@example.org", "nobody@localhost"):
        users.add(name, "pw")
    directory = make(
        users,
        aliases=parse_aliases("list+owner: a\nlist: a+b\n"),
        catch_all={"example.org": "nobody@localhost"},
        recipient_delimiter=delimiter,
    )
    assert [str(r.address) for r in directory.expand([Recipient(rcpt(address))])] == [target]


def test_catch_all_to_an_unknown_address_is_unknown(store: UserStore) -> None:
    directory = make(store, catch_all={"localhost": "nobody@example.org", "Example.ORG": "info@localhost"})
    assert directory.check(rcpt("zed@localhost")) == S.UNKNOWN_USER  # catch-alls are not chained
    assert directory.check(rcpt("zed@example.org")) == S.UNKNOWN_USER  # info@localhost is unknown


def test_catch_all_to_an_external_address(store: UserStore) -> None:
    directory = make(store, catch_all={"localhost": "ops@remote.test"})
    [target] = directory.expand([Recipient(rcpt("zed@localhost"))])
    assert (str(target.address), target.orcpt) == ("ops@remote.test", "rfc822;zed@localhost")


def test_quota_at_rcpt(store: UserStore) -> None:
    sizes, clock = Sizes(), Clock()
    directory = make(store, quota_bytes=1000, mailbox_size=sizes, monotonic=clock)
    bob = directory.maildir_for(Address("Bob", "example.org"))
    sizes.sizes[bob] = 1000
    assert directory.check(rcpt("bob@example.org")) == S.MAILBOX_FULL
    assert directory.check(rcpt("ghost@example.org")) == S.MAILBOX_FULL  # its only target is Bob
    assert directory.check(rcpt("info@example.org")) is None  # alice still has room
    assert directory.check(rcpt("alice@example.org")) is None
    sizes.sizes[bob] = 999
    assert directory.check(rcpt("bob@example.org")) == S.MAILBOX_FULL  # cached for a moment
    clock.now += 2.5
    assert directory.check(rcpt("bob@example.org")) is None
    calls = sizes.calls
    for _ in range(5):
        directory.check(rcpt("bob@example.org"))
    assert sizes.calls == calls  # a burst costs no scans


def test_a_maildir_that_cannot_be_measured_does_not_end_the_session(
    store: UserStore, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(maildir: Path) -> int:
        raise PermissionError(13, "Permission denied", str(maildir))

    directory = make(store, quota_bytes=1000, mailbox_size=broken)
    with caplog.at_level(logging.WARNING, logger="postier.users"):
        assert directory.check(rcpt("bob@example.org")) is None  # accepted: delivery decides (451)
    assert any("cannot measure" in r.getMessage() for r in caplog.records)


def test_quota_is_not_measured_for_lmtp_domains(store: UserStore) -> None:
    sizes = Sizes()
    directory = make(store, quota_bytes=1000, mailbox_size=sizes, lmtp={"example.org": "127.0.0.1:24"})
    sizes.sizes[directory.maildir_for(Address("Bob", "example.org"))] = 5000
    assert directory.check(rcpt("bob@example.org")) is None  # the LMTP server keeps its own quota
    assert sizes.calls == 0


def test_maildir_for(store: UserStore, tmp_path: Path) -> None:
    directory = make(store, tmp_path)
    assert directory.maildir_for(Address("Bob", "Example.ORG")) == tmp_path / "mail/example.org/bob"
    assert directory.maildir_for(Address("carol", "bücher.example")) == (
        tmp_path / "mail/xn--bcher-kva.example/carol"
    )
    evil = directory.maildir_for(Address('"../../evil"', "example.org"))
    assert evil.resolve().is_relative_to((tmp_path / "mail/example.org").resolve())
    elsewhere = make(store, tmp_path, mailbox_path="/srv/mail/{domain}/{user}/Maildir")
    assert elsewhere.maildir_for(Address("bob", "example.org")) == Path("/srv/mail/example.org/bob/Maildir")


def test_is_mailbox(store: UserStore) -> None:
    directory = make(store)
    assert directory.is_mailbox(Address("bob", "example.org"))
    assert directory.is_mailbox(Address("postmaster", "localhost"))
    assert not directory.is_mailbox(Address("info", "example.org"))  # an alias, not a mailbox
    assert not directory.is_mailbox(POSTMASTER)
    assert not directory.is_mailbox(Address("dave", "elsewhere.test"))  # a user, but not local


def test_users_added_later_are_found(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.json", **FAST)  # type: ignore[arg-type]
    directory = make(users)
    assert directory.check(rcpt("newbie@example.org")) == S.UNKNOWN_USER
    users.add("newbie@example.org", "pw")
    assert directory.check(rcpt("newbie@example.org")) is None


def test_local_domains_can_change(store: UserStore) -> None:
    directory = make(store)
    directory.set_local_domains(["elsewhere.test"])
    assert directory.check(rcpt("nobody@example.org")) is None  # no longer local
    assert directory.check(rcpt("nobody@elsewhere.test")) == S.UNKNOWN_USER
    assert directory.check(rcpt("dave@elsewhere.test")) is None


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"catch_all": {"remote.test": "a@example.org"}}, "local.catch_all.remote.test"),
        ({"catch_all": {"localhost": "not an address"}}, "local.catch_all.localhost"),
        ({"postmaster": "x@[192.0.2.1]"}, "local.postmaster"),
        ({"mailbox_path": "mail/{domain}/{login}"}, "local.mailbox_path"),
        ({"mailbox_path": "mail/{domain}"}, "local.mailbox_path"),
        ({"lmtp": {"remote.test": "unix:/run/dovecot/lmtp"}}, "local.lmtp.remote.test"),
        ({"lmtp": {"localhost": "unix:run/lmtp"}}, "local.lmtp.localhost"),  # not an absolute path
        ({"lmtp": {"localhost": "127.0.0.1:99999"}}, "local.lmtp.localhost"),
        ({"lmtp": {"localhost": ""}}, "local.lmtp.localhost"),
    ],
)
def test_bad_settings_are_config_errors(store: UserStore, options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make(store, **options)
    assert caught.value.path == key


def test_a_quota_needs_a_size_function(store: UserStore) -> None:
    with pytest.raises(ValueError, match="mailbox_size"):
        make(store, quota_bytes=10)


def test_from_config_reads_the_aliases_file_under_data_dir(store: UserStore, tmp_path: Path) -> None:
    (tmp_path / "aliases").write_text("help: alice@example.org\n")
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "relay": {"local_domains": ["example.org"]},
            "local": {"quota_bytes": 5},
        }
    )
    directory = LocalDirectory.from_config(config, store, mailbox_size=Sizes())
    assert directory.check(rcpt("help@example.org")) is None
    assert directory.check(rcpt("nohelp@example.org")) == S.UNKNOWN_USER
    assert directory.quota_bytes == 5
    assert directory.maildir_for(Address("alice", "example.org")) == tmp_path / "mail/example.org/alice"
