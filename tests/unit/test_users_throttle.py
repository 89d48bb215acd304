"""AuthThrottle as a table of (time, action, client) steps with the state expected after each."""

from __future__ import annotations

import pytest

from postier.users import AuthThrottle, client_key

A = "192.0.2.1"
B = "198.51.100.7"

# (time, action, ip, expected): action "fail" / "ok" records, "check" only looks; expected is check(ip) after.
Step = tuple[float, str, str, str]

SCENARIOS: dict[str, list[Step]] = {
    "a new client is ok": [(0, "check", A, "ok")],
    "one failure delays the next attempt": [(0, "fail", A, "delay"), (1, "check", A, "delay")],
    "the fifth failure in the window locks": [
        (0, "fail", A, "delay"),
        (10, "fail", A, "delay"),
        (20, "fail", A, "delay"),
        (30, "fail", A, "delay"),
        (40, "fail", A, "locked"),
        (41, "check", A, "locked"),
        (939, "check", A, "locked"),
        (940, "check", A, "ok"),  # 40 + 900: the lockout is over and the failures forgotten
    ],
    "failures older than the window do not count": [
        (0, "fail", A, "delay"),
        (1, "fail", A, "delay"),
        (2, "fail", A, "delay"),
        (3, "fail", A, "delay"),
        (299, "check", A, "delay"),
        (300, "check", A, "delay"),  # the one at 0 has left the window, the others not yet
        (303, "check", A, "ok"),
        (310, "fail", A, "delay"),  # one recent failure: far from a lockout
        (311, "check", A, "delay"),
    ],
    "clients are counted apart": [
        (0, "fail", A, "delay"),
        (1, "fail", A, "delay"),
        (2, "fail", A, "delay"),
        (3, "fail", A, "delay"),
        (4, "fail", A, "locked"),
        (5, "check", B, "ok"),
        (6, "fail", B, "delay"),
        (7, "check", A, "locked"),
    ],
    "a success forgets the failures": [
        (0, "fail", A, "delay"),
        (1, "fail", A, "delay"),
        (2, "ok", A, "ok"),
        (3, "fail", A, "delay"),
    ],
    "a success does not lift a lockout": [
        (0, "fail", A, "delay"),
        (1, "fail", A, "delay"),
        (2, "fail", A, "delay"),
        (3, "fail", A, "delay"),
        (4, "fail", A, "locked"),
        (5, "ok", A, "locked"),
    ],
    "one IPv6 /64 is one client": [
        (0, "fail", "2001:db8:1:2::1", "delay"),
        (1, "fail", "2001:db8:1:2::2", "delay"),
        (2, "fail", "2001:db8:1:2:aaaa::3", "delay"),
        (3, "fail", "2001:db8:1:2:ffff:ffff:ffff:ffff", "delay"),
        (4, "fail", "2001:db8:1:2::5", "locked"),
        (5, "check", "2001:db8:1:2::99", "locked"),
        (6, "check", "2001:db8:1:3::1", "ok"),
    ],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_throttle_scenarios(steps: list[Step]) -> None:
    throttle = AuthThrottle(max_failures=5, window_s=300, lockout_s=900)
    for now, action, ip, expected in steps:
        if action == "fail":
            throttle.record_failure(ip, now)
        elif action == "ok":
            throttle.record_success(ip, now)
        assert throttle.check(ip, now) == expected, (now, action, ip)


def test_record_failure_says_when_it_locked() -> None:
    throttle = AuthThrottle(max_failures=3, window_s=60, lockout_s=120)
    assert [throttle.record_failure(A, t) for t in (0, 1, 2)] == ["delay", "delay", "locked"]


def test_delay_grows_and_is_capped() -> None:
    throttle = AuthThrottle(max_failures=10, window_s=300, lockout_s=900, max_delay_s=8)
    delays = []
    for t in range(6):
        throttle.record_failure(A, t)
        delays.append(throttle.delay_s(A, t))
    assert delays == [1, 2, 4, 8, 8, 8]
    assert throttle.delay_s(B, 6) == 0
    assert throttle.delay_s(A, 1000) == 0


def test_memory_is_bounded_by_max_clients() -> None:
    throttle = AuthThrottle(max_clients=100)
    for i in range(1000):
        throttle.record_failure(f"10.0.{i // 256}.{i % 256}", i * 0.01)
    assert len(throttle) == 100
    assert throttle.check("10.0.3.231", 10) == "delay"  # the most recent is kept
    assert throttle.check("10.0.0.0", 10) == "ok"  # the oldest was forgotten


def test_expired_clients_are_dropped() -> None:
    throttle = AuthThrottle(max_failures=5, window_s=300, lockout_s=900)
    for i in range(50):
        throttle.record_failure(f"10.0.0.{i}", 0)
    for i in range(5):
        throttle.record_failure("10.9.9.9", i)  # locked until 904
    assert len(throttle) == 51
    throttle.record_failure(B, 800)  # the 50 are past their window; the locked one stays
    assert len(throttle) == 2
    throttle.record_success(B, 2000)
    assert len(throttle) == 0


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:DB8:0:0:1::1", "2001:db8::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix", "unix"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(max_failures=0)
    with pytest.raises(ValueError):
        AuthThrottle(window_s=0)


def test_account_budget_grows_per_failure_from_any_address_and_a_success_clears_it() -> None:
    """Issue 14, finding 6: failures at one account count whatever the client's address."""
    throttle = AuthThrottle(max_failures=100, window_s=60, lockout_s=60, max_account_delay_s=5)
    assert throttle.account_delay_s("alice@example.test", 0) == 0
    for i, ip in enumerate(["192.0.2.1", "198.51.100.2", "203.0.113.3", "2001:db8::1"]):
        throttle.record_failure(ip, i)
        throttle.record_account_failure("Alice@Example.test", i)
    assert throttle.account_delay_s("alice@example.test", 4) == 5  # 1, 2, 4, 8 → capped at 5
    assert throttle.account_delay_s("bob@example.test", 4) == 0
    assert throttle.check("192.0.2.9", 4) == "ok"  # never a lockout by account
    throttle.record_success("192.0.2.9", 5, "alice@example.test")
    assert throttle.account_delay_s("alice@example.test", 5) == 0


def test_account_budget_forgets_old_failures_and_stays_bounded() -> None:
    throttle = AuthThrottle(window_s=10, max_account_delay_s=8, max_clients=100)
    throttle.record_account_failure("a", 0)
    assert throttle.account_delay_s("a", 5) == 1 and throttle.account_delay_s("a", 11) == 0
    for i in range(1000):
        throttle.record_account_failure(f"user{i}", 20)
    assert len(throttle._accounts) <= 100


def test_account_budget_off_by_default() -> None:
    throttle = AuthThrottle()
    throttle.record_account_failure("a", 0)
    assert throttle.account_delay_s("a", 1) == 0
