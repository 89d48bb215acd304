"""The user store on a real directory: round trips, normalisation, sender rules, reload, rehash."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postier.mail.address import Address
from postier.users import (
    InvalidAddressError,
    InvalidPasswordError,
    UnknownUserError,
    UserExistsError,
    UserStore,
    UserStoreError,
    normalize_login,
    normalize_sender_rule,
    users_path,
)

FAST = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def open_store(path: Path, **kwargs: object) -> UserStore:
    return UserStore(path, **{**FAST, **kwargs})  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return users_path(tmp_path / "var")


def test_round_trip_through_a_second_store(path: Path) -> None:
    clock = Clock()
    store = open_store(path, clock=clock)
    added = store.add("alice@example.test", "correct horse", senders=["alice@example.test", "@example.org"])
    assert added.created_at == added.updated_at == clock.now

    again = open_store(path)
    user = again.get("alice@example.test")
    assert user is not None
    assert user.address == "alice@example.test"
    assert user.senders == ("alice@example.test", "@example.org")
    assert user.created_at == clock.now and not user.disabled
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in path.read_text() and "correct horse" not in repr(user)
    assert again.verify("alice@example.test", "correct horse") == "alice@example.test"
    assert [u.address for u in again.list()] == ["alice@example.test"]


def test_file_is_private_and_atomic_leaves_no_temp_files(path: Path) -> None:
    store = open_store(path)
    store.add("a@example.test", "pw1")
    store.add("b@example.test", "pw2")
    store.delete("a@example.test")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["users.json", "users.json.lock"]
    assert [u["address"] for u in json.loads(path.read_text())["users"]] == ["b@example.test"]


def test_missing_file_is_an_empty_store(path: Path) -> None:
    store = open_store(path)
    assert store.list() == []
    assert store.get("a@example.test") is None
    assert not path.exists()


def test_wrong_password_and_wrong_case_local_part(path: Path) -> None:
    store = open_store(path)
    store.add("alice@example.test", "secret")
    assert store.verify("alice@example.test", "Secret") is None
    assert store.verify("alice@example.test", "") is None
    assert (
        store.verify("Alice@example.test", "secret") is None
    )  # RFC 5321 §2.4: local parts are case-sensitive
    assert store.dummy_verifies == 1  # only the unknown "Alice" went to the dummy hash


@pytest.mark.parametrize(
    "username",
    ["nobody@example.test", "not an address", "", "x@[192.0.2.1]", "a@b@c"],
)
def test_unknown_or_malformed_user_costs_a_verify_on_the_dummy_hash(path: Path, username: str) -> None:
    store = open_store(path)
    store.add("alice@example.test", "secret")
    before = (store.verifies, store.dummy_verifies)
    assert store.verify(username, "secret") is None
    assert (store.verifies, store.dummy_verifies) == (before[0] + 1, before[1] + 1)


def test_known_user_costs_one_verify_and_no_dummy(path: Path) -> None:
    store = open_store(path)
    store.add("alice@example.test", "secret")
    assert store.verify("alice@example.test", "wrong") is None
    assert (store.verifies, store.dummy_verifies) == (1, 0)


@pytest.mark.parametrize(
    ("given", "login"),
    [
        ("User@EXAMPLE.test", "User@example.test"),
        ("user@Example.Test", "user@example.test"),
        ("  bob@example.test ", "bob@example.test"),
        ('"bob"@example.test', "bob@example.test"),
        ('"bob smith"@example.test', '"bob smith"@example.test'),
        ("anna@bücher.example", "anna@xn--bcher-kva.example"),
        ("anna@BÜCHER.example", "anna@xn--bcher-kva.example"),
        ("jörg@xn--bcher-kva.example", "jörg@xn--bcher-kva.example"),
    ],
)
def test_normalize_login(given: str, login: str) -> None:
    assert normalize_login(given) == login


@pytest.mark.parametrize("bad", ["", "alice", "@example.test", "alice@", "a b@example.test", "a@[127.0.0.1]"])
def test_normalize_login_refuses(bad: str) -> None:
    with pytest.raises(InvalidAddressError):
        normalize_login(bad)


@pytest.mark.parametrize(
    ("rule", "normalised"),
    [
        ("@Example.ORG", "@example.org"),
        ("@bücher.example", "@xn--bcher-kva.example"),
        ("X@Y.test", "X@y.test"),
    ],
)
def test_normalize_sender_rule(rule: str, normalised: str) -> None:
    assert normalize_sender_rule(rule) == normalised


def test_login_with_any_domain_spelling(path: Path) -> None:
    store = open_store(path)
    store.add("User@EXAMPLE.test", "pw")
    assert [u.address for u in store.list()] == ["User@example.test"]
    for spelling in ["User@EXAMPLE.test", "User@example.test", "User@Example.Test"]:
        assert store.verify(spelling, "pw") == "User@example.test"
    assert store.get("User@EXAMPLE.TEST") is not None


def test_unicode_passwords_are_saslprepped(path: Path) -> None:
    store = open_store(path)
    store.add("a@example.test", "caf\u00e9\u00a0ok")  # composed é, no-break space
    assert store.verify("a@example.test", "cafe\u0301 ok") == "a@example.test"  # decomposed é, space
    assert store.verify("a@example.test", "I\u00adX") is None


@pytest.mark.parametrize("password", ["", "\u00ad", "tab\there", "bell\x07"])
def test_bad_new_passwords(path: Path, password: str) -> None:
    store = open_store(path)
    with pytest.raises(InvalidPasswordError):
        store.add("a@example.test", password)
    assert store.list() == []


def test_add_existing_user_and_unknown_user_errors(path: Path) -> None:
    store = open_store(path)
    store.add("a@example.test", "pw")
    with pytest.raises(UserExistsError):
        store.add("a@EXAMPLE.test", "pw2")
    for operation in (
        lambda: store.set_password("b@example.test", "x"),
        lambda: store.delete("b@example.test"),
        lambda: store.set_senders("b@example.test", ["@example.test"]),
        lambda: store.set_disabled("b@example.test", True),
    ):
        with pytest.raises(UnknownUserError):
            operation()
    assert store.verify("a@example.test", "pw") == "a@example.test"


def test_set_password_updates_timestamp_and_hash(path: Path) -> None:
    clock = Clock()
    store = open_store(path, clock=clock)
    store.add("a@example.test", "old")
    clock.now += timedelta(days=1)
    user = store.set_password("a@example.test", "new")
    assert user.updated_at == clock.now and user.created_at == clock.now - timedelta(days=1)
    assert store.verify("a@example.test", "old") is None
    assert store.verify("a@example.test", "new") == "a@example.test"


def test_disabled_user_cannot_log_in_or_send(path: Path) -> None:
    store = open_store(path)
    store.add("a@example.test", "pw")
    store.set_disabled("a@example.test", True)
    assert store.verify("a@example.test", "pw") is None
    assert store.dummy_verifies == 0  # a disabled user still costs a real verify
    assert not store.can_send_as("a@example.test", Address("a", "example.test"))
    store.set_disabled("a@example.test", False)
    assert store.verify("a@example.test", "pw") == "a@example.test"


SENDER_CASES = [
    # (sender rules or None for the default, MAIL FROM, allowed)
    (None, Address("alice", "example.test"), True),
    (None, Address("alice", "EXAMPLE.test"), True),
    (None, Address("alice", "example.test."), True),
    (None, Address('"alice"', "example.test"), True),
    (None, Address("Alice", "example.test"), False),
    (None, Address("bob", "example.test"), False),
    (None, Address("alice", "example.org"), False),
    (None, Address("alice", "sub.example.test"), False),
    (None, None, True),  # the null sender: no one is impersonated
    (["@example.org"], Address("anyone", "Example.org"), True),
    (["@example.org"], Address("alice", "example.test"), False),  # the list replaces the default
    (["@example.org"], Address("x", "sub.example.org"), False),
    (["@bücher.example"], Address("x", "xn--bcher-kva.example"), True),
    (["@bücher.example"], Address("x", "BÜCHER.example"), True),
    (["alice@example.test", "@example.org"], Address("alice", "example.test"), True),
    (None, Address("alice", "[192.0.2.1]"), False),
    (None, Address("postmaster", ""), False),
    (None, Address('"alice@example.test"', "evil.test"), False),
]


@pytest.mark.parametrize(("senders", "sender", "allowed"), SENDER_CASES)
def test_can_send_as(path: Path, senders: list[str] | None, sender: Address | None, allowed: bool) -> None:
    store = open_store(path)
    user = store.add("alice@example.test", "pw", senders=senders)
    assert store.can_send_as("alice@example.test", sender) is allowed
    assert store.can_send_as(user, sender) is allowed


def test_can_send_as_unknown_user(path: Path) -> None:
    assert not open_store(path).can_send_as("ghost@example.test", None)


def test_senders_need_at_least_one_valid_rule(path: Path) -> None:
    store = open_store(path)
    with pytest.raises(InvalidAddressError):
        store.add("a@example.test", "pw", senders=[])
    with pytest.raises(InvalidAddressError):
        store.add("a@example.test", "pw", senders=["@"])
    store.add("a@example.test", "pw")
    assert store.set_senders("a@example.test", ["@Example.test", "@example.test"]).senders == (
        "@example.test",
    )


def test_reload_after_an_external_change(path: Path) -> None:
    server_side = open_store(path)
    assert server_side.verify("new@example.test", "pw") is None
    open_store(path).add("new@example.test", "pw")  # what `postier user add` does in another process
    assert server_side.verify("new@example.test", "pw") == "new@example.test"
    open_store(path).set_password("new@example.test", "pw2")
    assert server_side.verify("new@example.test", "pw") is None
    open_store(path).delete("new@example.test")
    assert server_side.get("new@example.test") is None


def test_concurrent_writers_keep_both_changes(path: Path) -> None:
    one, two = open_store(path), open_store(path)
    one.add("a@example.test", "pw")
    two.add("b@example.test", "pw")  # two's cache predates a@: the write must re-read the file
    assert [u.address for u in open_store(path).list()] == ["a@example.test", "b@example.test"]


def test_corrupt_file(path: Path) -> None:
    store = open_store(path)
    store.add("a@example.test", "pw")
    path.write_text("{not json")
    # A running server keeps the last good copy …
    assert store.verify("a@example.test", "pw") == "a@example.test"
    # … a new store refuses to start, and writers refuse to overwrite what they cannot read.
    with pytest.raises(UserStoreError):
        open_store(path)
    with pytest.raises(UserStoreError):
        store.add("b@example.test", "pw")
    assert path.read_text() == "{not json"


def test_rehash_when_parameters_change(path: Path) -> None:
    open_store(path).add("a@example.test", "pw")
    assert "t=1," in path.read_text()
    stronger = open_store(path, time_cost=2)
    assert stronger.verify("a@example.test", "wrong") is None
    assert "t=1," in path.read_text()  # only a successful login may rehash
    assert stronger.verify("a@example.test", "pw") == "a@example.test"
    assert "t=2," in path.read_text() and "t=1," not in path.read_text()
    assert open_store(path).verify("a@example.test", "pw") == "a@example.test"


def test_default_parameters_are_the_librarys(path: Path) -> None:
    import argon2

    user = UserStore(path).add("a@example.test", "pw")
    recommended = argon2.PasswordHasher()
    params = argon2.extract_parameters(user.password_hash)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        recommended.time_cost,
        recommended.memory_cost,
        recommended.parallelism,
    )
