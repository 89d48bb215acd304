"""SASL credential store and password hashing: users, their argon2id hashes and sender rules; the
server's ``Authenticator``; the AUTH brute-force throttle (``docs/users.md``). Local recipients: the
aliases file and ``LocalDirectory`` (who exists here, where their mail goes; ``docs/delivery.md``)."""

from postier.users.aliases import Aliases, AliasesError, AliasFile, parse_aliases
from postier.users.auth import Authenticator, Refused
from postier.users.directory import LocalDirectory, mailbox_name
from postier.users.model import (
    InvalidAddressError,
    InvalidPasswordError,
    UnknownUserError,
    User,
    UserExistsError,
    UserStoreError,
    normalize_login,
    normalize_sender_rule,
)
from postier.users.store import USERS_FILE, UserStore, users_path
from postier.users.throttle import AuthThrottle, ThrottleState, client_key

__all__ = [
    "USERS_FILE",
    "AliasFile",
    "Aliases",
    "AliasesError",
    "AuthThrottle",
    "Authenticator",
    "InvalidAddressError",
    "InvalidPasswordError",
    "LocalDirectory",
    "Refused",
    "ThrottleState",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserStore",
    "UserStoreError",
    "client_key",
    "mailbox_name",
    "normalize_login",
    "normalize_sender_rule",
    "parse_aliases",
    "users_path",
]
