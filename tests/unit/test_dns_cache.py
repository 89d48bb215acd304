"""AnswerCache: TTLs on an injected clock, negative caching caps, bounded size."""

from __future__ import annotations

from postier.dns import AnswerCache, NoData, NxDomain


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_positive_entry_lives_for_its_ttl() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock)
    cache.put("a.test", "A", ("127.0.0.2",), 60)
    clock.now = 59.9
    assert cache.get("a.test", "A") == ("127.0.0.2",)
    clock.now = 60
    assert cache.get("a.test", "A") is None
    assert len(cache) == 0


def test_ttl_zero_is_not_cached() -> None:
    cache = AnswerCache(FakeClock())
    cache.put("a.test", "A", ("127.0.0.2",), 0)
    assert cache.get("a.test", "A") is None


def test_ttls_are_capped() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock, max_ttl_s=100, max_negative_ttl_s=10)
    cache.put("a.test", "A", ("127.0.0.2",), 10**6)
    cache.put("b.test", "A", NxDomain("b.test", "A"), 3600)
    cache.put("c.test", "MX", NoData("c.test", "MX"), 5)
    clock.now = 9
    assert isinstance(cache.get("b.test", "A"), NxDomain)
    clock.now = 10
    assert cache.get("b.test", "A") is None
    assert cache.get("c.test", "MX") is None
    assert cache.get("a.test", "A") == ("127.0.0.2",)
    clock.now = 100
    assert cache.get("a.test", "A") is None


def test_types_are_separate_keys() -> None:
    cache = AnswerCache(FakeClock())
    cache.put("a.test", "A", ("127.0.0.2",), 60)
    assert cache.get("a.test", "AAAA") is None


def test_full_cache_drops_expired_then_oldest() -> None:
    clock = FakeClock()
    cache = AnswerCache(clock, max_entries=3)
    cache.put("old.test", "A", ("1.1.1.1",), 100)
    cache.put("short.test", "A", ("2.2.2.2",), 1)
    cache.put("mid.test", "A", ("3.3.3.3",), 100)
    clock.now = 2
    cache.put("new1.test", "A", ("4.4.4.4",), 100)  # evicts the expired one
    assert cache.get("old.test", "A") == ("1.1.1.1",)
    cache.put("new2.test", "A", ("5.5.5.5",), 100)  # evicts the oldest inserted
    assert cache.get("old.test", "A") is None
    assert len(cache) == 3
