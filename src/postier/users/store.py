"""The SASL credential store: one JSON file under ``data_dir``, argon2id hashes.

Theory of operation
-------------------
Why a JSON file and not SQLite: the store is small (people, not messages), written rarely (by
``postier user …``) and read on every AUTH by a running server. A whole-file atomic replace (temp file in
the same directory → fsync → rename → fsync the directory) means a reader sees the old or the new store,
never half of one, and a new inode on each write makes "did it change?" one ``stat`` per AUTH (inode,
mtime, size), with no connection to keep or WAL file to watch. It is also readable and diffable by an
administrator, and backed up with one file copy. Writers (the CLI, and the server when it rehashes) take
an exclusive ``flock`` on ``users.json.lock``, read the file fresh, change it and replace it, so two
concurrent ``postier user add`` never lose one another's change. The file is created mode 0600.

Passwords are prepared with SASLprep (RFC 4013, as RFC 4616 §2 asks) and hashed with argon2id at the
argon2-cffi defaults (RFC 9106 low-memory profile) unless the constructor says otherwise. Checking a
password costs the same whether the user exists or not: unknown and malformed names are verified against a
dummy hash made with the same parameters, so the time taken does not tell which addresses have accounts.
A hash made with older parameters is replaced after the next successful login (``check_needs_rehash``).
"""

from __future__ import annotations

import builtins
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import argon2
import msgspec

from postier.mail.address import Address
from postier.safeio import atomic_write
from postier.users.model import (
    InvalidAddressError,
    InvalidPasswordError,
    UnknownUserError,
    User,
    UserExistsError,
    UserStoreError,
    normalize_login,
    normalize_sender_rule,
    sender_matches,
)
from postier.users.saslprep import saslprep

__all__ = ["USERS_FILE", "UserStore", "users_path"]

log = logging.getLogger("postier.users")

USERS_FILE = "users.json"
_FORMAT_VERSION = 1
_DEFAULTS = argon2.PasswordHasher()  # RFC 9106 §4 second recommended option: t=3, m=64 MiB, p=4


def users_path(data_dir: Path) -> Path:
    """Where the store lives in a data directory."""
    return Path(data_dir) / USERS_FILE


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    address: str
    hash: str
    senders: list[str]
    created_at: datetime
    updated_at: datetime
    disabled: bool = False


class _File(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    users: list[_Record]


T = TypeVar("T")

_Stamp = tuple[int, int, int] | None  # (inode, mtime_ns, size); None: no file


class UserStore:
    """Users of one data directory. Thread-safe; every method may block on disk or on argon2."""

    def __init__(
        self,
        path: Path,
        *,
        time_cost: int = _DEFAULTS.time_cost,
        memory_cost: int = _DEFAULTS.memory_cost,
        parallelism: int = _DEFAULTS.parallelism,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=argon2.Type.ID
        )
        self._clock = clock
        self._lock = threading.Lock()  # guards the cache, the counters and the dummy hash
        self._users: dict[str, User] = {}
        self._stamp: _Stamp = None
        self._dummy_hash: str | None = None
        self._verifies = 0
        self._dummy_verifies = 0
        self._in_flight = 0
        self._max_in_flight = 0
        with self._lock:
            self._users, self._stamp = self._read()

    # -- observable counters (for tests and metrics) ------------------------------------------------

    @property
    def verifies(self) -> int:
        """argon2 verifications done so far, dummy ones included."""
        return self._verifies

    @property
    def dummy_verifies(self) -> int:
        """Verifications against the dummy hash (unknown or malformed user names)."""
        return self._dummy_verifies

    @property
    def max_concurrent_verifies(self) -> int:
        """The most verifications that ever ran at the same time."""
        return self._max_in_flight

    # -- reading -----------------------------------------------------------------------------------

    def get(self, address: str) -> User | None:
        """The user with this login name, or None; raises InvalidAddressError for a non-address."""
        return self._current().get(normalize_login(address))

    def can_send_as(self, user: str | User, sender: Address | None) -> bool:
        """May ``user`` (a canonical name or a record) use ``sender`` as MAIL FROM?

        The null sender ``<>`` is allowed: it only asks that no bounce come back (RFC 5321 §4.5.5), and a
        user agent may legitimately send a notification or a read receipt with it; it cannot be used to
        impersonate anyone. A disabled or unknown user may send as nobody.
        """
        record = user if isinstance(user, User) else self._current().get(user)
        if record is None or record.disabled:
            return False
        if sender is None:
            return True
        return sender_matches(record.senders, sender)

    def verify(self, username: str, password: str) -> str | None:
        """The canonical user name when ``password`` is right for an enabled user, else None.

        Blocking, and deliberately slow (one argon2 verification, about 150 ms at the defaults): call it
        through ``Authenticator``, which runs it in a thread pool under a concurrency cap.
        """
        try:
            name: str | None = normalize_login(username)
        except InvalidAddressError:
            name = None
        record = None if name is None else self._current().get(name)
        try:
            prepared = saslprep(password, allow_unassigned=True)
        except ValueError:
            prepared = None
        if record is None or prepared is None:
            self._check(self._dummy(), password, dummy=True)
            return None
        if not self._check(record.password_hash, prepared, dummy=False) or record.disabled:
            return None
        if self._hasher.check_needs_rehash(record.password_hash):
            self._rehash(record, prepared)
        return record.address

    def warm_up(self) -> None:
        """Make the dummy hash now (one argon2 hash): then the first unknown user costs what others do."""
        self._dummy()

    # -- changing ----------------------------------------------------------------------------------

    def add(self, address: str, password: str, *, senders: Iterable[str] | None = None) -> User:
        """Create a user; ``senders`` defaults to the user's own address. Raises UserExistsError."""
        name = normalize_login(address)
        rules = (name,) if senders is None else _sender_rules(senders)
        password_hash = self._hasher.hash(_new_password(password))
        now = self._clock()

        def change(users: dict[str, User]) -> User:
            if name in users:
                raise UserExistsError(f"user exists: {name}")
            users[name] = User(name, password_hash, rules, created_at=now, updated_at=now)
            return users[name]

        return self._modify(change)

    def set_password(self, address: str, password: str) -> User:
        """Replace a user's password. Raises UnknownUserError."""
        password_hash = self._hasher.hash(_new_password(password))
        return self._update(address, lambda u: replace(u, password_hash=password_hash))

    def set_senders(self, address: str, senders: Iterable[str]) -> User:
        """Replace a user's sender rules (addresses, or ``@domain``). Raises UnknownUserError."""
        rules = _sender_rules(senders)
        return self._update(address, lambda u: replace(u, senders=rules))

    def set_disabled(self, address: str, disabled: bool) -> User:
        """Disable (no login, no sending) or enable a user, keeping the password. Raises UnknownUserError."""
        return self._update(address, lambda u: replace(u, disabled=disabled))

    def delete(self, address: str) -> None:
        """Remove a user. Raises UnknownUserError."""
        name = normalize_login(address)

        def change(users: dict[str, User]) -> None:
            if users.pop(name, None) is None:
                raise UnknownUserError(f"no such user: {name}")

        self._modify(change)

    def list(self) -> builtins.list[User]:
        """Every user, sorted by address."""
        return sorted(self._current().values(), key=lambda u: u.address)

    # -- internals ---------------------------------------------------------------------------------

    def _update(self, address: str, how: Callable[[User], User]) -> User:
        name = normalize_login(address)
        now = self._clock()

        def change(users: dict[str, User]) -> User:
            if name not in users:
                raise UnknownUserError(f"no such user: {name}")
            users[name] = replace(how(users[name]), updated_at=now)
            return users[name]

        return self._modify(change)

    def _check(self, password_hash: str, password: str, *, dummy: bool) -> bool:
        with self._lock:
            self._verifies += 1
            self._dummy_verifies += dummy
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._hasher.verify(password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            log.error("users: unreadable password hash in %s", self.path)
            return False
        finally:
            with self._lock:
                self._in_flight -= 1

    def _dummy(self) -> str:
        """A hash of a random password with the store's parameters, made once, on first need."""
        if self._dummy_hash is None:
            made = self._hasher.hash(secrets.token_urlsafe(24))
            with self._lock:
                if self._dummy_hash is None:
                    self._dummy_hash = made
        return self._dummy_hash

    def _rehash(self, record: User, password: str) -> None:
        """Upgrade a hash made with other parameters; a failure to write only costs the upgrade."""
        new_hash = self._hasher.hash(password)

        def change(users: dict[str, User]) -> None:
            current = users.get(record.address)
            if current is not None and current.password_hash == record.password_hash:
                users[record.address] = replace(current, password_hash=new_hash)

        try:
            self._modify(change)
        except (UserStoreError, OSError) as exc:
            log.warning("users: could not store the rehashed password of %s: %s", record.address, exc)
        else:
            log.info("users: password hash upgraded user=%s", record.address)

    def _current(self) -> dict[str, User]:
        """The users as on disk now: re-read when the file's inode, mtime or size changed."""
        stamp = _stat(self.path)
        with self._lock:
            if stamp == self._stamp:
                return self._users
            try:
                self._users, self._stamp = self._read()
            except UserStoreError as exc:  # keep serving the last good copy; say so once per change
                log.error("users: keeping the previous store, cannot reload %s: %s", self.path, exc)
                self._stamp = stamp
            else:
                log.info("users: reloaded %s count=%d", self.path, len(self._users))
            return self._users

    def _read(self) -> tuple[dict[str, User], _Stamp]:
        try:
            with open(self.path, "rb") as f:
                stamp = _fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            raise UserStoreError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            parsed = msgspec.json.decode(data, type=_File)
        except msgspec.DecodeError as exc:
            raise UserStoreError(f"{self.path} is not a valid user store: {exc}") from None
        if parsed.version != _FORMAT_VERSION:
            raise UserStoreError(f"{self.path}: unsupported format version {parsed.version}")
        users = {r.address: _to_user(r) for r in parsed.users}
        return users, stamp

    def _modify(self, change: Callable[[dict[str, User]], T]) -> T:
        """Read the file fresh under the writers' lock, apply ``change`` to a copy, replace the file."""
        with self._write_lock():
            users, _ = self._read()
            result = change(users)
            stamp = self._write(users)
            with self._lock:
                self._users, self._stamp = users, stamp
            return result

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, users: dict[str, User]) -> _Stamp:
        """Atomic replace: temp file in the same directory → fsync → rename → fsync the directory."""
        records = [_to_record(users[name]) for name in sorted(users)]
        data = msgspec.json.format(msgspec.json.encode(_File(_FORMAT_VERSION, records)), indent=2) + b"\n"
        previous = _stat(self.path)
        st = atomic_write(self.path, data, before_sync=lambda fd: _advance_mtime(fd, previous))  # mode 0600
        return (st.st_ino, st.st_mtime_ns, st.st_size)


def _new_password(password: str) -> str:
    try:
        prepared = saslprep(password, allow_unassigned=False)
    except ValueError as exc:
        raise InvalidPasswordError(f"password not allowed: {exc}") from None
    if not prepared:
        raise InvalidPasswordError("empty password")
    return prepared


def _sender_rules(senders: Iterable[str]) -> tuple[str, ...]:
    rules = tuple(dict.fromkeys(normalize_sender_rule(s) for s in senders))
    if not rules:
        raise InvalidAddressError("at least one sender address or @domain is needed")
    return rules


def _stat(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:  # missing; any other trouble shows when the file is read
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _advance_mtime(fd: int, previous: _Stamp) -> None:
    """Make mtimes strictly increase from one version of the file to the next.

    Readers notice a change by (inode, mtime, size). Inode numbers are reused and a coarse clock can give
    two quick writes the same mtime, so without this a reader could miss a change that lands on the
    inode, mtime and size it cached two writes ago.
    """
    if previous is None:
        return
    mtime_ns = os.fstat(fd).st_mtime_ns
    if mtime_ns <= previous[1]:
        os.utime(fd, ns=(previous[1] + 1, previous[1] + 1))


def _fstat(fd: int) -> _Stamp:
    st = os.fstat(fd)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _to_user(r: _Record) -> User:
    return User(r.address, r.hash, tuple(r.senders), r.created_at, r.updated_at, r.disabled)


def _to_record(u: User) -> _Record:
    return _Record(u.address, u.password_hash, list(u.senders), u.created_at, u.updated_at, u.disabled)
