"""The running side of DKIM signing: read the keys, check their records, publish a new signer.

Theory of operation. ``DkimKeys.refresh()`` reads the key files (a thread: disk and key parsing),
looks their records up through the configured ``Resolver``, records the first sighting of a record
(``seen_at``: the start of a rotation's grace period), decides every key's state (``table.decide``)
and builds a new immutable ``DkimSigner``, handed to ``on_change`` (the application swaps it into
the server and the bouncer). It runs at start, on every reload (SIGHUP) and every
``check_interval_s``. A file that cannot be read is logged and skipped; the other keys keep working.
Changes of state are logged once, when they happen: a key that starts or stops signing, a record
that does not match (such a key is never used), an unreadable file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from postier.config.dkim import DkimConfig
from postier.dns.resolver import Resolver
from postier.mailauth.dkim.keystore import KeyFile, load_keys, note_seen
from postier.mailauth.dkim.signer import DkimSigner
from postier.mailauth.dkim.table import Published, State, Status, build_signer, check_records, decide
from postier.observe import fields, get_logger

__all__ = ["DkimKeys", "key_root", "statuses"]

_log = get_logger("postier.dkim")


def key_root(data_dir: Path) -> Path:
    """Where keys made by ``postier dkim keygen`` live."""
    return data_dir / "dkim"


async def statuses(
    config: DkimConfig, data_dir: Path, resolver: Resolver, now: datetime
) -> tuple[list[Status], list[tuple[Path, str]]]:
    """Every key's state, its record looked up now; and the files that could not be read."""
    keys, problems = await asyncio.to_thread(load_keys, key_root(data_dir), config.keys, data_dir)
    lookups = await check_records(resolver, keys)
    fresh = [k for k in keys if k.seen_at is None and lookups[k.path].published is Published.MATCHES]
    if fresh:
        seen = await asyncio.to_thread(_note_all, fresh, now)
        keys = [seen.get(k.path, k) for k in keys]
    return decide(keys, lookups, config, now), [(p.path, p.reason) for p in problems]


def _note_all(keys: list[KeyFile], now: datetime) -> dict[Path, KeyFile]:
    out = {}
    for key in keys:
        try:
            out[key.path] = note_seen(key, now)
        except OSError as exc:  # a read-only key directory: the grace period starts at each start
            _log.warning("dkim: cannot record that %s was seen: %s", key.path, exc)
    return out


class DkimKeys:
    """Keeps ``signer`` current; ``on_change`` hears each new one."""

    def __init__(
        self,
        config: DkimConfig,
        data_dir: Path,
        resolver: Resolver,
        *,
        on_change: Callable[[DkimSigner], None] = lambda _s: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.resolver = resolver
        self.signer = DkimSigner()
        self._on_change = on_change
        self._clock = clock
        self._seen: dict[Path, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def reconfigure(self, config: DkimConfig, resolver: Resolver) -> None:
        """A reload: the next refresh (now) uses these."""
        self.config, self.resolver = config, resolver
        self._wake.set()

    async def refresh(self) -> DkimSigner:
        """Read, check, decide, publish. Never raises for a key or a lookup (logged instead)."""
        found, problems = await statuses(self.config, self.data_dir, self.resolver, self._clock())
        self._log_changes(found, problems)
        self.signer = build_signer(found, self.config)
        self._on_change(self.signer)
        return self.signer

    def _log_changes(self, found: list[Status], problems: list[tuple[Path, str]]) -> None:
        now: dict[Path, str] = {}
        for status in found:
            k, state = status.key, status.state
            text = state.value + (f" ({status.lookup.detail})" if state is State.MISMATCH else "")
            now[k.path] = text
            if self._seen.get(k.path) == text:
                continue
            level = _log.warning if state in (State.MISMATCH, State.UNPUBLISHED) else _log.info
            level(
                "dkim key %s/%s (%s): %s%s",
                k.domain,
                k.selector,
                k.algorithm,
                text,
                f"; {status.note}" if status.note else "",
                extra=fields(domain=k.domain, selector=k.selector, state=state.value),
            )
        for path, reason in problems:
            now[path] = "unreadable: " + reason
            if self._seen.get(path) != now[path]:
                _log.error("dkim key file %s cannot be used: %s", path, reason, extra=fields(path=str(path)))
        self._seen = now

    async def run_forever(self) -> None:
        """Refresh every ``check_interval_s``, or at once after ``reconfigure``."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.check_interval_s)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:
                _log.exception("dkim: checking the keys failed; the current keys stay")
