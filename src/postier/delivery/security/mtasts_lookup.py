"""MTA-STS policy discovery (RFC 8461 §5.1): TXT record, cache, fetch — which policy applies now.

Theory of operation. ``MtaSts.policy(domain)``:

``refresh_due`` (hourly, from the application) refreshes cached policies that are ``refresh_s`` old
even when no mail goes to their domain (§5.1: "proactively refresh").

1. asks the ``_mta-sts`` TXT record. Absent, broken or unanswerable → the cached policy if one is
   unexpired (an attacker stripping DNS must not switch a policy off, §10.2), else none;
2. a valid record whose ``id`` is the cached one's, cached less than ``refresh_s`` ago → the cache;
3. otherwise (new domain, a changed ``id``, time to refresh) → fetch and parse the policy. A good one
   replaces the cache entry (a new ``max_age`` from now, §3.3 / §5.1 refresh). A failure keeps the
   unexpired cached policy; without one, the domain has no policy — and the failure is remembered for
   ``retry_s`` so that a dead policy server does not cost a fetch timeout at every delivery.

Concurrent calls for one domain share one lookup. The answer says where the policy came from and
what went wrong on the way (``problems``), for the delivery log, ``postier explain tls`` and TLS-RPT.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from postier.delivery.security.mtasts import (
    Broken,
    StsPolicy,
    StsRecord,
    parse_policy,
    parse_record,
    record_name,
)
from postier.delivery.security.mtasts_cache import CachedPolicy, PolicyCache
from postier.delivery.security.mtasts_fetch import PolicyFetcher
from postier.dns import DnsError, NoData, NxDomain, Resolver

__all__ = ["MtaSts", "StsAnswer", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StsAnswer:
    """The policy in force for a domain (None: no MTA-STS), its ``id``, ``origin`` ("fetched" or
    "cache"), and ``problems`` met on the way (a broken record, a failed fetch …)."""

    policy: StsPolicy | None
    id: str = ""
    origin: str = ""
    problems: tuple[str, ...] = ()


class MtaSts:
    """See the module docstring."""

    def __init__(
        self,
        resolver: Resolver,
        fetcher: PolicyFetcher,
        cache: PolicyCache,
        *,
        refresh_s: float = 86_400.0,
        retry_s: float = 300.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._resolver = resolver
        self._fetcher = fetcher
        self._cache = cache
        self._refresh = timedelta(seconds=refresh_s)
        self._retry = timedelta(seconds=retry_s)
        self._clock = clock
        self._failed: dict[str, tuple[datetime, str]] = {}
        self._inflight: dict[str, asyncio.Task[StsAnswer]] = {}

    async def policy(self, domain: str) -> StsAnswer:
        domain = domain.lower().rstrip(".")
        task = self._inflight.get(domain)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._policy(domain))
            self._inflight[domain] = task
            task.add_done_callback(lambda _: self._inflight.pop(domain, None))
        return await asyncio.shield(task)

    async def refresh_due(self) -> int:
        """RFC 8461 §5.1 "proactively refresh": ask again for every cached policy fetched at least
        ``refresh_s`` ago (a changed id, or the same policy with a new ``max_age`` from now), so a
        domain mailed rarely keeps its policy; how many were looked up."""
        now = self._clock()
        due = []
        for domain in self._cache.domains():
            entry = self._cache.get(domain, now)
            if entry is not None and now - entry.fetched_at >= self._refresh:
                due.append(domain)
        for domain in due:
            await self.policy(domain)
        return len(due)

    async def _policy(self, domain: str) -> StsAnswer:
        now = self._clock()
        cached = self._cache.get(domain, now)
        record = await self._record(domain)
        if not isinstance(record, StsRecord):
            problems = (record.reason,) if isinstance(record, Broken) else ()
            return _from_cache(cached, problems)
        if cached is not None and cached.id == record.id and now - cached.fetched_at < self._refresh:
            return _from_cache(cached, ())
        failed = self._failed.get(domain)
        if failed is not None and failed[0] > now and (cached is None or cached.id != record.id):
            return _from_cache(cached, (failed[1],))
        fetched = await self._fetcher.fetch(domain)
        policy = parse_policy(fetched) if isinstance(fetched, str) else fetched
        if isinstance(policy, Broken):
            self._failed[domain] = (now + self._retry, policy.reason)
            return _from_cache(cached, (policy.reason,))
        self._failed.pop(domain, None)
        self._cache.put(domain, CachedPolicy(record.id, policy, now))
        return StsAnswer(policy, record.id, "fetched")

    async def _record(self, domain: str) -> StsRecord | Broken | None:
        try:
            texts = await self._resolver.txt(record_name(domain))
        except (NxDomain, NoData):
            return None
        except DnsError as exc:
            return Broken(f"{record_name(domain)} TXT: {exc.describe}")
        return parse_record(texts)


def _from_cache(cached: CachedPolicy | None, problems: tuple[str, ...]) -> StsAnswer:
    if cached is None:
        return StsAnswer(None, problems=problems)
    return StsAnswer(cached.policy, cached.id, "cache", problems)
