"""DKIM private keys on disk: ``data_dir/dkim/DOMAIN/SELECTOR.pem`` (0600) and a small
``SELECTOR.json`` beside it (when it was made, when its record was first seen in DNS).

Theory of operation: every ``*.pem`` under ``data_dir/dkim/DOMAIN/`` is a key for DOMAIN under the
selector of its file name; keys elsewhere are named by ``[[dkim.key]]``. Reading never stops at a bad
file: ``load_keys`` returns the keys it could read and one ``KeyProblem`` per file it could not, so
one unreadable key is reported and the others keep working. Every write is atomic (a temp file in the
same directory, fsync, rename, fsync the directory): a reader sees the old file or the new one.
The JSON is optional: a PEM dropped in by hand counts as made at its modification time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from postier.config.dkim import DkimKeyConfig
from postier.mail.domain import normalize_domain
from postier.mailauth.dkim.keys import Algorithm, PrivateKey, algorithm_of, key_from_pem, key_to_pem
from postier.safeio import atomic_write

__all__ = ["KeyFile", "KeyProblem", "load_keys", "note_seen", "write_key"]


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One private key and what is known of it. ``seen_at``: when its DNS record was first seen
    matching (None: never yet); ``configured``: named by ``[[dkim.key]]`` rather than found."""

    domain: str
    selector: str
    path: Path
    key: PrivateKey = field(repr=False)
    created_at: datetime
    seen_at: datetime | None = None
    configured: bool = False

    @property
    def algorithm(self) -> Algorithm:
        return algorithm_of(self.key)


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """A key file that could not be used, and why (for the log and ``postier dkim list``)."""

    path: Path
    reason: str


def _meta_path(pem: Path) -> Path:
    return pem.with_suffix(".json")


def _when(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _write_meta(key: KeyFile) -> None:
    meta = {"created_at": key.created_at.isoformat(), "seen_at": key.seen_at and key.seen_at.isoformat()}
    atomic_write(_meta_path(key.path), json.dumps(meta).encode() + b"\n", mode=0o600)


def write_key(root: Path, domain: str, selector: str, key: PrivateKey, now: datetime) -> KeyFile:
    """Store a new key as ``root/DOMAIN/SELECTOR.pem`` (0600, directories 0700). FileExistsError
    when that selector already has a key: a key is never overwritten."""
    directory = root / normalize_domain(domain)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{selector}.pem"
    if path.exists():
        raise FileExistsError(f"{path} exists: choose another selector")
    entry = KeyFile(normalize_domain(domain), selector, path, key, now)
    _write_meta(entry)
    atomic_write(path, key_to_pem(key), mode=0o600)
    return entry


def note_seen(entry: KeyFile, now: datetime) -> KeyFile:
    """Record that the key's DNS record was seen matching now (the first time only)."""
    if entry.seen_at is not None:
        return entry
    seen = replace(entry, seen_at=now)
    _write_meta(seen)
    return seen


def _read(path: Path, domain: str, selector: str, configured: bool) -> KeyFile:
    key = key_from_pem(path.read_bytes())
    meta: dict[str, object] = {}
    meta_path = _meta_path(path)
    if meta_path.is_file():
        loaded = json.loads(meta_path.read_text())
        meta = loaded if isinstance(loaded, dict) else {}
    created = _when(meta.get("created_at")) or datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return KeyFile(domain, selector, path, key, created, _when(meta.get("seen_at")), configured)


_Candidate = tuple[Path, str, str, bool]  # path, domain, selector, configured


def _candidates(root: Path, configured: Iterable[DkimKeyConfig], data_dir: Path) -> list[_Candidate]:
    found: list[_Candidate] = []
    if root.is_dir():
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            for pem in sorted(directory.glob("*.pem")):
                found.append((pem, directory.name, pem.stem, False))
    for entry in configured:
        found.append((data_dir / entry.file, entry.domain, entry.selector, True))
    return found


def load_keys(
    root: Path, configured: Iterable[DkimKeyConfig] = (), data_dir: Path | None = None
) -> tuple[list[KeyFile], list[KeyProblem]]:
    """Every key under ``root`` and every configured one (relative files under ``data_dir``);
    the files that could not be read come back as problems, never as an exception."""
    keys: list[KeyFile] = []
    problems: list[KeyProblem] = []
    for path, domain, selector, is_configured in _candidates(root, configured, data_dir or root.parent):
        try:
            keys.append(_read(path, normalize_domain(domain), selector, is_configured))
        except (OSError, ValueError, TypeError) as exc:  # unreadable, not PEM, not a signing key
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(KeyProblem(path, reason or type(exc).__name__))
    return keys, problems
