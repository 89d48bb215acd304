"""SASL credential store and password hashing: users, their argon2id hashes and sender rules; the
server's ``Authenticator``; the AUTH brute-force throttle. See ``docs/users.md``."""

from postier.users.auth import Authenticator
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
