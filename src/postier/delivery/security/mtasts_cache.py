"""The MTA-STS policy cache, persisted in ``data_dir/mta-sts.json`` (RFC 8461 §5.1).

Theory of operation. A policy is kept until its ``max_age`` runs out, whatever the DNS says meanwhile:
that is what makes MTA-STS resist an attacker who strips the TXT record or the HTTPS answer
(§10.2) — so the cache must outlive restarts. Each entry holds the domain's record ``id``, the policy
and when it was fetched. The file is JSON, written whole (temporary file, fsync, rename, fsync of
the directory) after every change; changes are rare (a new or changed policy). A file that cannot be
read is logged and treated as empty: the next deliveries fetch again.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from postier.delivery.security.mtasts import StsPolicy, parse_policy
from postier.observe import fields, get_logger

__all__ = ["CachedPolicy", "PolicyCache"]

_log = get_logger("postier.delivery.mtasts")


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    id: str
    policy: StsPolicy
    fetched_at: datetime

    @property
    def expires_at(self) -> datetime:
        return self.fetched_at + timedelta(seconds=self.policy.max_age_s)


class PolicyCache:
    """Policies by domain; ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._entries: dict[str, CachedPolicy] = {}
        if path is not None:
            self._entries = _load(path)

    def get(self, domain: str, now: datetime) -> CachedPolicy | None:
        """The unexpired policy of ``domain`` (an expired one is dropped)."""
        entry = self._entries.get(domain)
        if entry is not None and now >= entry.expires_at:
            del self._entries[domain]
            return None
        return entry

    def domains(self) -> list[str]:
        return sorted(self._entries)

    def put(self, domain: str, entry: CachedPolicy) -> None:
        self._entries[domain] = entry
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        data = {
            d: {"id": e.id, "policy": e.policy.to_text(), "fetched_at": e.fetched_at.isoformat()}
            for d, e in self._entries.items()
        }
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self._path)
            fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _log.warning("cannot write the MTA-STS cache", extra=fields(path=str(self._path), error=str(exc)))


def _load(path: Path) -> dict[str, CachedPolicy]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _log.warning("cannot read the MTA-STS cache", extra=fields(path=str(path), error=str(exc)))
        return {}
    entries: dict[str, CachedPolicy] = {}
    if not isinstance(raw, dict):
        return entries
    for domain, item in raw.items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            policy = parse_policy(item["policy"])
            fetched_at = datetime.fromisoformat(item["fetched_at"])
            if isinstance(policy, StsPolicy) and fetched_at.tzinfo is not None:
                entries[str(domain)] = CachedPolicy(str(item["id"]), policy, fetched_at.astimezone(UTC))
    return entries
