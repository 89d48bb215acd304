"""MTA-STS discovery (RFC 8461 §5.1): TXT, cache (persisted), fetch, id changes, refresh, failures.
Fakes implement the ``Resolver`` and ``PolicyFetcher`` protocols; the clock is injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from postier.delivery.security.mtasts import Broken, StsMode
from postier.delivery.security.mtasts_cache import PolicyCache
from postier.delivery.security.mtasts_lookup import MtaSts
from postier.dns import MxRecord, NxDomain, TemporaryDnsError

POLICY = "version: STSv1\nmode: enforce\nmx: mx.dest.test\nmax_age: 3600\n"


class TxtResolver:
    def __init__(self) -> None:
        self.txt_records: dict[str, list[str] | Exception] = {}

    async def mx(self, domain: str) -> list[MxRecord]:
        raise NxDomain(domain, "MX")

    async def addresses(self, host: str) -> list[str]:
        raise NxDomain(host, "A")

    async def txt(self, name: str) -> list[str]:
        answer = self.txt_records.get(name, NxDomain(name, "TXT"))
        if isinstance(answer, Exception):
            raise answer
        return answer


class Fetcher:
    def __init__(self, answer: str | Broken = POLICY) -> None:
        self.answer = answer
        self.fetched: list[str] = []

    async def fetch(self, domain: str) -> str | Broken:
        self.fetched.append(domain)
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make(tmp_path: Path, fetcher: Fetcher, clock: Clock) -> tuple[MtaSts, TxtResolver]:
    resolver = TxtResolver()
    resolver.txt_records["_mta-sts.dest.test"] = ["v=STSv1; id=one"]
    sts = MtaSts(
        resolver, fetcher, PolicyCache(tmp_path / "sts.json"), refresh_s=600, retry_s=60, clock=clock
    )
    return sts, resolver


async def test_fetched_once_then_cached_and_persisted(tmp_path: Path) -> None:
    fetcher, clock = Fetcher(), Clock()
    sts, resolver = make(tmp_path, fetcher, clock)
    first = await sts.policy("dest.test")
    assert first.policy is not None and first.policy.mode is StsMode.ENFORCE and first.origin == "fetched"
    second = await sts.policy("DEST.test.")
    assert (second.origin, fetcher.fetched) == ("cache", ["dest.test"])
    # a new process reads the file: no fetch, and the TXT record stripped by an attacker changes nothing
    again = MtaSts(resolver, Fetcher(Broken("down")), PolicyCache(tmp_path / "sts.json"), clock=clock)
    resolver.txt_records.pop("_mta-sts.dest.test")
    third = await again.policy("dest.test")
    assert (third.origin, third.id) == ("cache", "one")


async def test_id_change_fetches_again(tmp_path: Path) -> None:
    fetcher, clock = Fetcher(), Clock()
    sts, resolver = make(tmp_path, fetcher, clock)
    await sts.policy("dest.test")
    resolver.txt_records["_mta-sts.dest.test"] = ["v=STSv1; id=two"]
    fetcher.answer = POLICY.replace("enforce", "testing")
    answer = await sts.policy("dest.test")
    assert answer.policy is not None and answer.policy.mode is StsMode.TESTING and answer.id == "two"
    assert len(fetcher.fetched) == 2


async def test_refresh_after_refresh_s_and_expiry_after_max_age(tmp_path: Path) -> None:
    fetcher, clock = Fetcher(), Clock()
    sts, resolver = make(tmp_path, fetcher, clock)
    await sts.policy("dest.test")
    clock.now += timedelta(seconds=601)
    fetcher.answer = Broken("policy server down")
    answer = await sts.policy("dest.test")  # refresh failed: the unexpired policy stays
    assert answer.origin == "cache" and answer.problems == ("policy server down",)
    assert len(fetcher.fetched) == 2
    clock.now += timedelta(seconds=3600)  # past max_age, and the TXT record is gone
    resolver.txt_records["_mta-sts.dest.test"] = TemporaryDnsError("_mta-sts.dest.test", "TXT")
    answer = await sts.policy("dest.test")
    assert answer.policy is None


async def test_failed_fetch_is_remembered_for_retry_s(tmp_path: Path) -> None:
    fetcher, clock = Fetcher(Broken("HTTP status 500")), Clock()
    sts, _ = make(tmp_path, fetcher, clock)
    assert (await sts.policy("dest.test")).policy is None
    assert (await sts.policy("dest.test")).problems == ("HTTP status 500",)
    assert len(fetcher.fetched) == 1
    clock.now += timedelta(seconds=61)
    fetcher.answer = POLICY
    assert (await sts.policy("dest.test")).policy is not None


async def test_no_record_no_policy_and_broken_policy(tmp_path: Path) -> None:
    fetcher, clock = Fetcher("version: STSv1\nmode: bogus\n"), Clock()
    sts, resolver = make(tmp_path, fetcher, clock)
    answer = await sts.policy("dest.test")
    assert answer.policy is None and "bad mode" in answer.problems[0]
    assert (await sts.policy("other.test")).policy is None
    assert fetcher.fetched == ["dest.test"]
    resolver.txt_records["_mta-sts.two.test"] = ["v=STSv1; id=a", "v=STSv1; id=b"]
    assert (await sts.policy("two.test")).problems == ("2 TXT records start with v=STSv1",)


async def test_a_corrupt_cache_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "sts.json").write_text("{not json")
    fetcher, clock = Fetcher(), Clock()
    sts, _ = make(tmp_path, fetcher, clock)
    assert (await sts.policy("dest.test")).origin == "fetched"


async def test_refresh_due_fetches_only_old_policies(tmp_path: Path) -> None:
    fetcher, clock = Fetcher(), Clock()
    sts, resolver = make(tmp_path, fetcher, clock)
    resolver.txt_records["_mta-sts.two.test"] = ["v=STSv1; id=two"]
    await sts.policy("dest.test")
    clock.now += timedelta(seconds=300)
    await sts.policy("two.test")
    assert await sts.refresh_due() == 0  # neither is refresh_s (600 s) old
    clock.now += timedelta(seconds=301)
    assert await sts.refresh_due() == 1  # dest.test only
    assert fetcher.fetched == ["dest.test", "two.test", "dest.test"]
    assert await sts.refresh_due() == 0  # just fetched again: a new fetched_at
