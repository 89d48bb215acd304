"""Local recipients: who exists in the local domains, and which mailboxes their mail ends in.

Theory of operation. A recipient is *local* when its domain, as a lowercase A-label without a
trailing dot, is one of ``relay.local_domains`` (address literals never are), or when it is the
bare ``<Postmaster>`` (RFC 5321 §4.1.1.3). A local recipient is resolved, in this order:

1. ``postmaster@`` any local domain and ``<Postmaster>`` always exist (RFC 5321 §4.5.1): they go
   to ``local.postmaster`` when it is set, else through the steps below for ``postmaster@domain``,
   else to the ``postmaster`` mailbox of the domain (the first local domain for the bare form).
2. an alias (``aliases.py``): each target is resolved in turn, recursively. A target equal to the
   alias itself means that mailbox ("bob: bob, bob@elsewhere" keeps a copy); any other way back to
   an address already being expanded is a loop: the whole recipient is then unknown, and the loop
   is logged. Targets that are unknown are left out (and logged); an alias none of whose targets
   resolve is unknown.
3. a user of the user store (full addresses, local parts compared case-insensitively, as RFC
   5321 §2.4 advises receivers to do, and as the lowercased Maildir names require).
4. sub-addressing: ``user+tag@domain`` is resolved as ``user@domain`` when it is not known as a
   whole (each character of ``local.recipient_delimiter`` is a delimiter).
5. the domain's catch-all (``local.catch_all``), resolved like an alias target, never twice.

Anything else is unknown: ``check`` answers ``550 5.1.1`` at RCPT time, so nothing unknown is
accepted and bounced later (no backscatter). A resolution ends in *final targets*: local mailboxes
(a user's canonical address, or ``postmaster@domain``) and external addresses, which delivery relays.
``check`` also refuses with ``452 4.2.2`` a recipient all of whose targets are local mailboxes that
are full already (``local.quota_bytes``); sizes come from an injected ``mailbox_size`` (delivery's
Maildir code) and are cached for ``size_cache_s`` so a burst of RCPTs costs one directory scan.
Domains delivered by LMTP (``local.lmtp``) are judged the same way, by this directory and not by
the LMTP server, except that no quota is measured for them (the LMTP server keeps its own).

``expand`` rewrites an envelope's recipients into final targets before the message is queued:
deduplicated, NOTIFY kept, and ORCPT set to the address the client gave when it gave none (RFC 3461
§4.2), so a bounce names the address the sender used. ``maildir_for`` maps a mailbox to its Maildir.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from postier.mail.address import Address, parse_mailbox
from postier.mail.domain import normalize_domain
from postier.mail.envelope import Recipient
from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.recipients.aliases import Aliases, AliasFile, alias_key
from postier.recipients.local_settings import check_template, config_address, lmtp_domains, local_domain_key
from postier.recipients.mailbox import mailbox_name
from postier.users.model import User

if TYPE_CHECKING:
    from postier.config.model import Config

__all__ = ["LocalDirectory", "UserLookup", "check_local_config", "mailbox_name"]

_log = logging.getLogger("postier.users")
_MAX_DEPTH = 20  # alias nesting beyond this is treated as a loop
_Stamp = tuple[int, int, int] | None


class UserLookup(Protocol):
    """What the directory needs of the user store: its file (to notice changes) and its users."""

    @property
    def path(self) -> Path: ...

    def list(self) -> list[User]: ...


class _AliasLoop(Exception):
    def __init__(self, chain: Sequence[str]) -> None:
        super().__init__(" -> ".join(chain))


class LocalDirectory:
    """The local recipients of one configuration. Not thread-safe: use it from the event loop."""

    def __init__(
        self,
        *,
        local_domains: Iterable[str],
        users: UserLookup,
        mailbox_root: Path,
        aliases: AliasFile | Aliases | None = None,
        catch_all: Mapping[str, str] | None = None,
        recipient_delimiter: str = "+",
        postmaster: str = "",
        mailbox_path: str = "mail/{domain}/{user}",
        quota_bytes: int = 0,
        lmtp: Mapping[str, str] | None = None,
        mailbox_size: Callable[[Path], int] | None = None,
        size_cache_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._domains = tuple(dict.fromkeys(normalize_domain(d) for d in local_domains))
        self._local = frozenset(self._domains)
        self._users = users
        self._root = Path(mailbox_root)
        self._aliases = aliases
        self._delimiters = recipient_delimiter
        self._catch_all = {
            local_domain_key(self._local, d, "local.catch_all"): config_address(v, f"local.catch_all.{d}")
            for d, v in (catch_all or {}).items()
        }
        self._lmtp = lmtp_domains(self._local, lmtp or {})
        self._postmaster = config_address(postmaster, "local.postmaster") if postmaster else None
        self._template = check_template(mailbox_path)
        self.quota_bytes = quota_bytes
        if quota_bytes > 0 and mailbox_size is None:
            raise ValueError("a quota needs a mailbox_size function")
        self._size_of = mailbox_size
        self._size_cache_s = size_cache_s
        self._monotonic = monotonic
        self._sizes: dict[Path, tuple[float, int]] = {}
        self._user_stamp: _Stamp = None
        self._user_index: dict[str, str] | None = None

    @classmethod
    def from_config(
        cls, config: Config, users: UserLookup, *, mailbox_size: Callable[[Path], int] | None = None
    ) -> LocalDirectory:
        """Build from ``relay.local_domains`` and ``[local]``; relative paths are under data_dir.
        Raises ``AliasesError`` when the aliases file does not parse, ``ConfigError`` for bad keys."""
        data_dir = Path(config.server.data_dir)
        local = config.local
        aliases_path = data_dir / (local.aliases or "aliases")
        if local.aliases and not aliases_path.exists():
            _log.warning("aliases: %s does not exist (yet): no aliases", aliases_path)
        return cls(
            local_domains=config.relay.local_domains,
            users=users,
            mailbox_root=data_dir,
            aliases=AliasFile(aliases_path),
            catch_all=local.catch_all,
            recipient_delimiter=local.recipient_delimiter,
            postmaster=local.postmaster,
            mailbox_path=local.mailbox_path,
            quota_bytes=local.quota_bytes,
            lmtp=local.lmtp,
            mailbox_size=mailbox_size,
        )

    def set_local_domains(self, local_domains: Iterable[str]) -> None:
        """A configuration reload: recipients are judged by the new list from now on (a catch-all of
        a domain that is no longer local stops applying)."""
        self._domains = tuple(dict.fromkeys(normalize_domain(d) for d in local_domains))
        self._local = frozenset(self._domains)
        self._user_index = None

    # --- questions ---------------------------------------------------------------------------------

    def is_local(self, address: Address) -> bool:
        """In a local domain, or the bare ``<Postmaster>``."""
        if address.is_postmaster:
            return bool(self._domains)
        if not address.domain or address.is_literal:
            return False
        try:
            return address.domain_key in self._local
        except ValueError:
            return False

    def check(self, address: Address) -> Reply | None:
        """The RCPT-time verdict: None to accept (non-local addresses too: relay policy decides
        those), ``550 5.1.1`` for an unknown user (or an alias loop), ``452 4.2.2`` when every
        target is a full local mailbox."""
        if not self.is_local(address):
            return None
        targets = self._targets(address)
        if not targets:
            return S.UNKNOWN_USER
        if self.quota_bytes > 0 and all(self._is_full(t) for t in targets):
            return S.MAILBOX_FULL
        return None

    def is_mailbox(self, address: Address) -> bool:
        """A final local target: a user of a local domain, or ``postmaster@`` a local domain."""
        if address.is_postmaster or not self.is_local(address):
            return False
        return address.local_part.lower() == "postmaster" or self._user(address) is not None

    def maildir_for(self, address: Address) -> Path:
        """The Maildir of a final local target (``local.mailbox_path`` under the mailbox root)."""
        domain = mailbox_name(address.domain_key) if address.domain else "_"
        relative = self._template.format(domain=domain, user=mailbox_name(address.local_part))
        return self._root / relative

    def mailbox_bytes(self, maildir: Path) -> int:
        """Size of a Maildir's mail (new/ and cur/), cached for ``size_cache_s`` seconds."""
        if self._size_of is None:
            return 0
        now = self._monotonic()
        cached = self._sizes.get(maildir)
        if cached is not None and cached[0] > now:
            return cached[1]
        size = self._size_of(maildir)
        if len(self._sizes) > 10_000:
            self._sizes.clear()
        self._sizes[maildir] = (now + self._size_cache_s, size)
        return size

    # --- expansion ---------------------------------------------------------------------------------

    def expand(self, recipients: Iterable[Recipient]) -> tuple[Recipient, ...]:
        """Final targets of ``recipients``, deduplicated; each keeps NOTIFY, and gets ORCPT = the
        address the client gave when it gave none. Non-local recipients stay as they are; a local
        one that does not resolve any more (the user was removed since RCPT) is kept as it is, and
        delivery refuses it."""
        out: dict[str, Recipient] = {}
        for rcpt in recipients:
            targets = self._targets(rcpt.address) if self.is_local(rcpt.address) else ()
            for target in targets or (rcpt.address,):
                key = self._dedup_key(target)
                if key in out:
                    continue
                if target == rcpt.address:
                    out[key] = rcpt
                else:
                    out[key] = Recipient(target, rcpt.notify, rcpt.orcpt or _orcpt(rcpt.address))
        return tuple(out.values())

    def _targets(self, address: Address) -> tuple[Address, ...]:
        """Final targets, deduplicated and in order; () for unknown (an alias loop included)."""
        try:
            found = self._resolve(address, ()) or []
        except _AliasLoop as loop:
            _log.warning("aliases: loop expanding <%s>: %s; treated as unknown", address, loop)
            if not _is_postmaster(address):
                return ()
            found = [self._postmaster_mailbox(address)]  # RFC 5321 §4.5.1: always accepted
        unique: dict[str, Address] = {}
        for target in found:
            unique.setdefault(self._dedup_key(target), target)
        return tuple(unique.values())

    def _postmaster_mailbox(self, address: Address) -> Address:
        return Address("postmaster", self._domains[0] if address.is_postmaster else address.domain_key)

    def _resolve(
        self, address: Address, seen: tuple[str, ...], *, catch_all: bool = True
    ) -> list[Address] | None:
        if address.is_postmaster:
            address = self._postmaster_mailbox(address)
        if not self.is_local(address):
            return [address]
        key = alias_key(address.local_part, address.domain)
        if key in seen or len(seen) >= _MAX_DEPTH:
            raise _AliasLoop((*seen, key))
        seen = (*seen, key)
        if _is_postmaster(address):
            # RFC 5321 §4.5.1: postmaster always exists; its own mailbox when nothing else resolves.
            mailbox = self._postmaster_mailbox(address)
            pm = self._postmaster
            if pm is not None and alias_key(pm.local_part, pm.domain) != key:
                return self._resolve(pm, seen, catch_all=False) or [mailbox]
            return (
                self._resolve_alias(address, key, seen) or self._resolve_mailbox(address, seen) or [mailbox]
            )
        found = self._resolve_alias(address, key, seen)
        if found is None:
            found = self._resolve_mailbox(address, seen)
        if found is None and catch_all and address.domain_key in self._catch_all:
            found = self._resolve(self._catch_all[address.domain_key], seen, catch_all=False)
        return found

    def _resolve_alias(self, address: Address, key: str, seen: tuple[str, ...]) -> list[Address] | None:
        table = self._alias_table()
        targets = None if table is None else table.lookup(address)
        if targets is None:
            return None
        found: list[Address] = []
        for text in targets:
            target = _target_address(text, address.domain)
            if alias_key(target.local_part, target.domain) == key and self.is_local(target):
                resolved = self._resolve_mailbox(target, seen)  # "bob: bob, …": bob's own mailbox
            else:
                resolved = self._resolve(target, seen)
            if resolved is None:
                _log.warning("aliases: <%s>: target <%s> is unknown, left out", address, target)
            found.extend(resolved or ())
        return found or None

    def _resolve_mailbox(self, address: Address, seen: tuple[str, ...]) -> list[Address] | None:
        user = self._user(address)
        if user is not None:
            return [user]
        base = self._without_tag(address)
        return None if base is None else self._resolve(base, seen, catch_all=False)

    def _without_tag(self, address: Address) -> Address | None:
        local = address.local_part
        if not self._delimiters or local.startswith('"'):
            return None
        cut = min((i for i, ch in enumerate(local) if ch in self._delimiters), default=-1)
        return Address(local[:cut], address.domain) if cut > 0 else None

    def _alias_table(self) -> Aliases | None:
        if isinstance(self._aliases, AliasFile):
            return self._aliases.current()
        return self._aliases

    def _user(self, address: Address) -> Address | None:
        canonical = self._users_by_key().get(alias_key(address.local_part, address.domain))
        if canonical is None:
            return None
        local, _, domain = canonical.rpartition("@")
        return Address(local, domain)

    def _users_by_key(self) -> dict[str, str]:
        """Lowercased key → the user's canonical address; rebuilt when the store's file changes."""
        stamp = _stat(self._users.path)
        if self._user_index is None or stamp != self._user_stamp:
            index: dict[str, str] = {}
            for user in self._users.list():
                local, _, domain = user.address.rpartition("@")
                if domain in self._local:
                    index.setdefault(alias_key(local, domain), user.address)
            self._user_index, self._user_stamp = index, stamp
        return self._user_index

    def _is_full(self, target: Address) -> bool:
        # An LMTP server keeps its own mailboxes (and quotas): only Maildirs written here are measured.
        if not self.is_local(target) or target.domain_key in self._lmtp:
            return False
        maildir = self.maildir_for(target)
        try:
            return self.mailbox_bytes(maildir) >= self.quota_bytes
        except OSError as exc:  # not full as far as we know: the delivery will defer with 451 if need be
            _log.warning("quota: cannot measure %s: %s", maildir, exc)
            return False

    def _dedup_key(self, address: Address) -> str:
        if self.is_local(address):
            return alias_key(address.local_part, address.domain)
        try:
            return f"{address.local_part}@{address.domain_key}"
        except ValueError:
            return str(address)


class _NoUsers:
    """A user store with nobody in it: enough to check a configuration."""

    path = Path(os.devnull)

    def list(self) -> list[User]:
        return []


def check_local_config(config: Config) -> None:
    """Check ``[local]`` the way ``postier serve`` does at start: the aliases file is parsed
    (``AliasesError`` naming its line) and the other keys checked (``ConfigError`` naming the key)."""
    LocalDirectory.from_config(config, _NoUsers())


def _is_postmaster(address: Address) -> bool:
    return address.is_postmaster or address.local_part.lower() == "postmaster"


def _orcpt(address: Address) -> str:
    """RFC 3461 §4.2 / RFC 6533 §3: the original recipient, typed."""
    return f"{'rfc822' if address.local_part.isascii() and address.domain.isascii() else 'utf-8'};{address}"


def _target_address(text: str, domain: str) -> Address:
    """An alias target: a whole address, or a local part in ``domain``."""
    if "@" in text:
        return parse_mailbox(text, allow_utf8=True)
    return Address(text, domain)


def _stat(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
