"""Authenticator: the server-facing, async side of the store, with real threads and real argon2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postier.server.sasl import Authenticator as AuthenticatorProtocol
from postier.users import Authenticator, Refused, UserStore, users_path


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    store = UserStore(users_path(tmp_path), time_cost=1, memory_cost=8192, parallelism=1)
    store.add("alice@example.test", "secret")
    return store


async def test_authenticate_right_wrong_unknown(store: UserStore) -> None:
    auth: AuthenticatorProtocol = Authenticator(store)
    assert await auth.authenticate("alice@EXAMPLE.test", "secret") == "alice@example.test"
    assert await auth.authenticate("alice@example.test", "nope") is None
    assert await auth.authenticate("bob@example.test", "secret") is None
    assert (store.verifies, store.dummy_verifies) == (3, 1)


@pytest.mark.parametrize("cap", [1, 2, 3])
async def test_many_concurrent_logins_respect_the_cap(tmp_path: Path, cap: int) -> None:
    # Slower hashes than FAST, so that verifies overlap whenever the cap allows it.
    store = UserStore(users_path(tmp_path), time_cost=2, memory_cost=16384, parallelism=1)
    store.add("alice@example.test", "secret")
    auth = Authenticator(store, max_concurrent=cap)
    logins = [("alice@example.test", "secret"), ("alice@example.test", "bad"), ("who@example.test", "x")] * 8
    results = await asyncio.gather(*(auth.authenticate(u, p) for u, p in logins))
    assert results == ["alice@example.test", None, None] * 8
    assert store.verifies == len(logins)
    assert 1 <= store.max_concurrent_verifies <= cap


async def test_the_loop_keeps_running_during_a_verify(store: UserStore) -> None:
    auth = Authenticator(store, max_concurrent=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    for _ in range(5):
        await auth.authenticate("alice@example.test", "secret")
    task.cancel()
    assert ticks > 5  # the ticker ran while verifies were in their thread


async def test_sees_users_added_after_start(store: UserStore) -> None:
    auth = Authenticator(store)
    UserStore(store.path, time_cost=1, memory_cost=8192, parallelism=1).add(
        "late@example.test", "pw"
    )  # e.g. `postier user add`
    assert await auth.authenticate("late@example.test", "pw") == "late@example.test"


def test_cap_must_be_positive(store: UserStore) -> None:
    with pytest.raises(ValueError):
        Authenticator(store, max_concurrent=0)


async def test_waiting_checks_are_bounded_and_admit_is_asked_at_their_turn(tmp_path: Path) -> None:
    """Issue 14, finding 6: beyond max_concurrent + max_waiting an attempt is refused BUSY unchecked; a
    waiting attempt whose admit() turns false before its turn is WITHDRAWN, unchecked."""
    store = UserStore(users_path(tmp_path), time_cost=2, memory_cost=16384, parallelism=1)
    store.add("alice@example.test", "secret")
    auth = Authenticator(store, max_concurrent=1, max_waiting=2)
    open_ = [True]
    results = await asyncio.gather(
        *(
            auth.authenticate("alice@example.test", "bad", admit=lambda: open_.pop(0) if open_ else False)
            for _ in range(5)
        )
    )
    assert results == [None, Refused.WITHDRAWN, Refused.WITHDRAWN, Refused.BUSY, Refused.BUSY]
    assert store.verifies == 1 and auth.pending == 0
