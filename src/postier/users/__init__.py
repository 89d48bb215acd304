"""SASL accounts: users, their argon2id hashes and sender rules (``docs/users.md``); the server's
``Authenticator``; the AUTH brute-force throttle. Who exists at the local domains and where their mail
goes is ``postier.recipients`` (it reads the users from here)."""

from postier.users.auth import Authenticator, Refused
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
    "AuthThrottle",
    "Authenticator",
    "InvalidAddressError",
    "InvalidPasswordError",
    "Refused",
    "ThrottleState",
    "UnknownUserError",
    "User",
    "UserExistsError",
    "UserStore",
    "UserStoreError",
    "client_key",
    "normalize_login",
    "normalize_sender_rule",
    "users_path",
]
