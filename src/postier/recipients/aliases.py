"""The aliases file: names that stand for other addresses.

Format (one entry per logical line, UTF-8)::

    # a comment: a line whose first non-blank character is "#" ("#" later in a line is text)
    postmaster: root
    info:       alice, bob@example.org
    sales@example.org: carol,
        dave@partner.example

``name: target, target …``; a line that starts with white space continues the one above. The name
is a local part (the alias exists in every local domain) or a whole address (only that domain); a
whole-address entry wins over a local-part one. Names are compared case-insensitively (local part
lowercased, domain as its lowercase A-label). A target is a local part (in the domain of the address
being expanded) or a whole address, local or not; targets may be other aliases. Pipes, files and
``:include:`` are refused: Postier only delivers to mailboxes. A name given twice, a missing colon or
a target that is not an address is an ``AliasesError`` naming the line.

Theory of operation: ``parse_aliases`` is pure (text → ``Aliases``). ``AliasFile`` owns a path and
re-reads it when its (inode, mtime, size) changes, at most once per lookup; a file that no longer
parses after a change keeps the last good table in service and logs the error once, so a typo made
while the server runs never turns every alias into an unknown user. A missing file is an empty table.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from postier.mail.address import Address, parse_mailbox
from postier.mail.domain import normalize_domain
from postier.mail.errors import AddressError, PostierError
from postier.users.model import canonical_local

__all__ = ["AliasFile", "Aliases", "AliasesError", "alias_key", "parse_aliases"]

_log = logging.getLogger("postier.users")
_Stamp = tuple[int, int, int] | None


class AliasesError(PostierError):
    """The aliases file cannot be read or has an error; ``line`` is its 1-based line number (0: none)."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}" if line else f"{source}: {message}")
        self.source = source
        self.line = line
        self.message = message


def alias_key(local_part: str, domain: str = "") -> str:
    """The lookup key: the local part lowercased (quotes that quote nothing special dropped), and
    ``@`` + the domain as its lowercase A-label when there is one."""
    local = canonical_local(local_part).lower()
    return f"{local}@{normalize_domain(domain)}" if domain else local


@dataclass(frozen=True, slots=True)
class Aliases:
    """The parsed table: key (``alias_key``) → targets as written (local parts or addresses)."""

    entries: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def lookup(self, address: Address) -> tuple[str, ...] | None:
        """Targets of ``address`` (whole-address entry first, then its local part), or None."""
        if not address.domain or address.is_literal:
            return None
        full = self.entries.get(alias_key(address.local_part, address.domain))
        if full is not None:
            return full
        return self.entries.get(alias_key(address.local_part))

    def __len__(self) -> int:
        return len(self.entries)


def parse_aliases(text: str, source: str = "aliases") -> Aliases:
    """Parse the aliases file format above; raises ``AliasesError`` naming the first bad line."""
    entries: dict[str, tuple[str, ...]] = {}
    for number, line in _logical_lines(text, source):
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise AliasesError(source, number, 'expected "name: target, target …"')
        key = _name_key(name, source, number)
        if key in entries:
            raise AliasesError(source, number, f"{name!r} is defined twice")
        targets = tuple(_target(t.strip(), source, number) for t in rest.split(",") if t.strip())
        if not targets:
            raise AliasesError(source, number, f"{name!r} has no targets")
        entries[key] = targets
    return Aliases(entries)


def _logical_lines(text: str, source: str) -> list[tuple[int, str]]:
    """(number of the first physical line, joined text); comments and blank lines dropped."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if not out:
                raise AliasesError(source, number, "continuation line without an entry above it")
            first, joined = out[-1]
            out[-1] = (first, f"{joined} {stripped}")
        else:
            out.append((number, stripped))
    return out


def _name_key(name: str, source: str, number: int) -> str:
    try:
        if "@" in name:
            address = parse_mailbox(name, allow_utf8=True)
            if address.is_literal:
                raise AliasesError(source, number, f"{name!r}: address literals cannot be aliases")
            return alias_key(address.local_part, address.domain)
        _check_local_part(name)
    except (AddressError, ValueError):
        raise AliasesError(source, number, f"{name!r} is not a local part or an address") from None
    return alias_key(name)


def _target(target: str, source: str, number: int) -> str:
    if target.startswith(("|", "/", ":include:")):
        raise AliasesError(source, number, f"{target!r}: only addresses are allowed, not pipes or files")
    try:
        if "@" in target:
            parse_mailbox(target, allow_utf8=True)
        else:
            _check_local_part(target)
    except (AddressError, ValueError):
        raise AliasesError(source, number, f"{target!r} is not a local part or an address") from None
    return target


def _check_local_part(local_part: str) -> None:
    parse_mailbox(f"{local_part}@x.invalid", allow_utf8=True)


class AliasFile:
    """An aliases file that follows its changes on disk. ``current()`` is cheap: one ``stat``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: _Stamp = None
        self._aliases = Aliases()
        self._stamp, self._aliases = self._read()  # at start an error is raised, not logged

    def current(self) -> Aliases:
        stamp = _stat(self.path)
        with self._lock:
            if stamp == self._stamp:
                return self._aliases
            try:
                self._stamp, self._aliases = self._read()
            except AliasesError as exc:
                _log.error("aliases: keeping the previous table, cannot reload: %s", exc)
                self._stamp = stamp
            else:
                _log.info("aliases: reloaded %s count=%d", self.path, len(self._aliases))
            return self._aliases

    def _read(self) -> tuple[_Stamp, Aliases]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return None, Aliases()
        except OSError as exc:
            raise AliasesError(str(self.path), 0, f"cannot read: {exc.strerror}") from None
        try:
            text = data.decode("utf-8-sig")  # a byte order mark some editors write is dropped
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise AliasesError(str(self.path), line, "not valid UTF-8") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size), parse_aliases(text, str(self.path))


def _stat(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
