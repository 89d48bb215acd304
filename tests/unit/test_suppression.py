"""checks/suppression.py: the list (expiry), the RCPT check (ours only), hard bounces suppress."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.checks.suppression import HardBounces, SuppressionCheck, SuppressionList, is_hard
from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.observe import subscribe
from postier.policy import ACCEPT, Client, Transaction
from postier.policy.verdict import Action


@pytest.mark.parametrize(
    ("code", "hard"),
    [("5.1.1", True), ("5.1.10", True), ("5.2.1", True), ("5.2.2", False), ("4.1.1", False), (None, False)],
)
def test_is_hard(code: str | None, hard: bool) -> None:
    assert is_hard(code) is hard


def test_list_add_find_expire_remove(tmp_path: Path) -> None:
    now = [1000.0]
    store = SuppressionList(tmp_path / "s.sqlite", clock=lambda: now[0])
    assert store.add("Bob@Far.test", "manual", "cli", expires_at=1100.0)
    assert not store.add("bob@far.test", "manual", "cli", expires_at=1100.0)  # already there
    found = store.find(Address("bob", "far.test"))
    assert found is not None and found.reason == "manual"
    now[0] = 1200.0
    assert store.find("bob@far.test") is None and store.list() == []  # expired
    assert store.add("bob@far.test", "manual")  # expired counts as not there
    assert store.remove("bob@far.test") and not store.remove("bob@far.test")
    store.close()


def test_the_check_refuses_our_clients_only(tmp_path: Path) -> None:
    store = SuppressionList(tmp_path / "s.sqlite")
    store.add("bob@far.test", "manual")
    check = SuppressionCheck(store)
    rcpt = Recipient(Address("bob", "far.test"))
    txn = Transaction(sender=Address("a", "example.test"))
    ours = Client(sid="s", ip="127.0.0.1", port=1, listener="submission", auth_user="a@example.test")
    stranger = Client(sid="s", ip="192.0.2.1", port=1, listener="smtp")
    verdict = check.on_rcpt(ours, txn, rcpt)
    assert verdict.action is Action.REJECT and str(verdict.reply).startswith("550 5.1.1")
    assert check.on_rcpt(stranger, txn, rcpt) is ACCEPT
    assert check.on_rcpt(ours, txn, Recipient(Address("carol", "far.test"))) is ACCEPT


def test_hard_bounces_suppress_and_say_so(tmp_path: Path) -> None:
    store = SuppressionList(tmp_path / "s.sqlite", clock=lambda: 0.0)
    seen: list[tuple[str, dict[str, object]]] = []
    unsubscribe = subscribe(lambda e, f: seen.append((e, dict(f))))
    try:
        hook = HardBounces(store, expiry_s=3600, clock=lambda: 0.0)
        hook(
            "delivery",
            {"id": "Q", "rcpt": "<a@far.test>", "result": "failed", "reply": "550 5.1.1 no", "dsn": "5.1.1"},
        )
        hook("delivery", {"id": "Q", "rcpt": "<b@far.test>", "result": "failed", "reply": "552 5.2.2 full"})
        hook(
            "delivery", {"id": "Q", "rcpt": "<c@far.test>", "result": "deferred", "reply": "450 4.1.1 later"}
        )
    finally:
        unsubscribe()
    assert [s.address for s in store.list()] == ["a@far.test"]
    assert store.list()[0].expires_at == 3600
    assert [(e, f["rcpt"]) for e, f in seen if e == "suppressed"] == [("suppressed", "<a@far.test>")]
