"""API keys: who may call the HTTP API, and for what (``postier api-key``, docs/api.md).

Theory of operation. A key is ``pk_<name>_<secret>``: 32 random octets (``secrets``), shown once when it
is made. The store (``data_dir/api-keys.json``, mode 0600) keeps only the SHA-256 of each secret: a key
is random and long, so a fast hash is as safe as a slow one and costs nothing per request (a slow
password hash such as argon2 protects *guessable* secrets). A presented key is found by its name part
and compared in constant time. The file is replaced atomically (``safeio.atomic_write``) on each
change; the server reads it again when its mtime changes, so a key added or removed with the CLI
while the server runs takes effect at the next request.

Scopes: ``send`` (POST /v1/messages), ``read`` (GET), ``admin`` (hold, release, retry, delete and
everything else). ``admin`` implies the other two.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from postier.mail.errors import PostierError
from postier.safeio import atomic_write

__all__ = ["SCOPES", "ApiKey", "ApiKeyError", "ApiKeyStore", "check_scopes", "keys_path"]

SCOPES = ("send", "read", "admin")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PREFIX = "pk_"


class ApiKeyError(PostierError):
    """A key name, scope or store that cannot be used."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    created_at: str
    sha256: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def keys_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "api-keys.json"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise ApiKeyError(f"scopes are a comma-separated subset of {','.join(SCOPES)}")
    return scopes


class ApiKeyStore:
    """The keys of one data directory. ``lookup`` re-reads the file when it changed on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> dict[str, ApiKey]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return self._keys
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_bytes())
                keys = {
                    k["name"]: ApiKey(k["name"], frozenset(k["scopes"]), k["created_at"], k["sha256"])
                    for k in raw["keys"]
                }
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ApiKeyError(f"cannot read {self.path}: {exc}") from None
            self._keys, self._stamp = keys, stamp
        return self._keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        data = {
            "keys": [
                {"name": k.name, "scopes": sorted(k.scopes), "created_at": k.created_at, "sha256": k.sha256}
                for k in keys.values()
            ]
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(data, indent=1).encode() + b"\n")
        self._stamp = None

    def list(self) -> list[ApiKey]:
        return sorted(self._load().values(), key=lambda k: k.name)

    def add(self, name: str, scopes: frozenset[str]) -> str:
        """Make a key; returns the secret (the only time it is seen)."""
        if not _NAME.fullmatch(name):
            raise ApiKeyError("a key name is 1-63 lowercase letters, digits and '-'")
        keys = dict(self._load())
        if name in keys:
            raise ApiKeyError(f"a key named {name!r} exists (remove it first)")
        secret = f"{_PREFIX}{name}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC).isoformat(timespec="seconds")
        keys[name] = ApiKey(name, scopes, now, _digest(secret))
        self._save(keys)
        return secret

    def remove(self, name: str) -> bool:
        keys = dict(self._load())
        if keys.pop(name, None) is None:
            return False
        self._save(keys)
        return True

    def lookup(self, secret: str) -> ApiKey | None:
        """The key ``secret`` is, or None."""
        if not secret.startswith(_PREFIX):
            return None
        name = secret[len(_PREFIX) :].partition("_")[0]
        key = self._load().get(name)
        if key is None or not hmac.compare_digest(key.sha256, _digest(secret)):
            return None
        return key
