"""The pipeline's rule (policy/pipeline.py): order, short-circuit, concurrency, deadlines, failures,
and how verdicts combine. Checks here are tiny real objects, not mocks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.mail.errors import ConfigError
from postier.mail.replies import S
from postier.policy import (
    ACCEPT,
    Action,
    Client,
    Message,
    Pipeline,
    Stage,
    Transaction,
    Verdict,
    defer,
    discard,
    quarantine,
    reject,
    tag,
)
from postier.policy.context import split_header
from postier.policy.hooks import load_check

CLIENT = Client("sid1", "192.0.2.1", 4000, "smtp")
TXN = Transaction(Address("a", "example.org"))
RCPT = Recipient(Address("b", "example.test"))


@dataclass
class Sync:
    name: str
    verdict: Verdict = ACCEPT
    asked: list[str] = field(default_factory=list)

    def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        self.asked.append(self.name)
        return self.verdict


@dataclass
class Async:
    name: str
    verdict: Verdict = ACCEPT
    gate: asyncio.Event | None = None
    started: list[str] = field(default_factory=list)
    on_failure: str = "defer"

    async def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        self.started.append(self.name)
        if self.gate is not None:
            await self.gate.wait()
        return self.verdict


async def test_no_check_at_a_stage_accepts() -> None:
    decision = await Pipeline([]).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.action is Action.ACCEPT and decision.verdicts == ()


async def test_the_first_sync_refusal_ends_the_stage_and_later_checks_are_not_asked() -> None:
    asked: list[str] = []
    checks = [
        Sync("one", asked=asked),
        Sync("two", reject(S.RELAY_DENIED, "no"), asked=asked),
        Sync("three", asked=asked),
    ]
    decision = await Pipeline(checks).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.reply == S.RELAY_DENIED and decision.verdict.check == "two"
    assert asked == ["one", "two"]


async def test_sync_checks_are_asked_before_async_ones_and_a_sync_refusal_starts_no_async_check() -> None:
    slow = Async("dns")
    refusal = Sync("relay", reject(S.RELAY_DENIED, "no"))
    decision = await Pipeline([slow, refusal]).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.check == "relay" and slow.started == []
    assert Pipeline([slow, refusal]).names(Stage.RCPT) == ("relay", "dns")


async def test_async_checks_run_concurrently_and_are_read_in_configured_order() -> None:
    gate = asyncio.Event()
    first = Async("first", defer(S.RATE_LIMITED, "first says wait"), gate=gate)
    second = Async("second", reject(S.RELAY_DENIED, "second says no"))
    run = asyncio.ensure_future(Pipeline([first, second]).run(Stage.RCPT, CLIENT, TXN, RCPT))
    while not (first.started and second.started):  # both started before either answered
        await asyncio.sleep(0)
    assert not run.done()
    gate.set()
    decision = await run
    assert decision.verdict.check == "first"  # configured order, though second answered first


async def test_a_check_past_the_deadline_defers_with_451_by_default() -> None:
    hung = Async("hung", gate=asyncio.Event())
    pipeline = Pipeline([hung], timeouts_s={Stage.RCPT: 0.01})
    decision = await pipeline.run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.action is Action.DEFER and decision.verdict.reply == S.POLICY_TEMPFAIL
    assert "no answer within" in decision.verdict.reason


async def test_a_check_that_may_fail_open_is_skipped_past_the_deadline() -> None:
    hung = Async("hung", gate=asyncio.Event(), on_failure="accept")
    decision = await Pipeline([hung], timeouts_s={Stage.RCPT: 0.01}).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.action is Action.ACCEPT
    assert [v.check for v in decision.verdicts] == ["hung"]  # still logged


class Broken:
    name = "broken"

    def on_connect(self, client: Client) -> Verdict:
        raise RuntimeError("a bug in the check")


async def test_a_check_that_raises_defers_and_at_connect_the_reply_is_421() -> None:
    decision = await Pipeline([Broken()]).run(Stage.CONNECT, CLIENT)
    assert decision.verdict.reply == S.POLICY_TEMPFAIL_CONNECT
    assert "RuntimeError" in decision.verdict.reason and "bug" not in str(decision.verdict.reply)


class Says:
    def __init__(self, name: str, verdict: Verdict) -> None:
        self.name, self.verdict = name, verdict

    def on_data(self, client: Client, txn: Transaction, message: Message) -> Verdict:
        return self.verdict


async def test_tags_combine_headers_in_order_and_add_scores() -> None:
    checks = [Says("a", tag(("X-A", "1"), score=2.5)), Says("b", tag(("X-B", "2"), score=1.0))]
    decision = await Pipeline(checks).run(Stage.DATA, CLIENT, TXN, Message(b"S: x\r\n\r\nbody"))
    assert decision.verdict.action is Action.TAG
    assert decision.verdict.headers == (("X-A", "1"), ("X-B", "2")) and decision.verdict.score == 3.5


@pytest.mark.parametrize(
    ("verdicts", "action"),
    [
        ([tag(("X", "1")), quarantine("looks bad")], Action.QUARANTINE),
        ([quarantine("looks bad"), discard("milter said so")], Action.DISCARD),
        ([discard("x"), reject(S.TOO_MANY_HOPS, "loop")], Action.REJECT),
    ],
)
async def test_the_strongest_verdict_wins(verdicts: list[Verdict], action: Action) -> None:
    checks = [Says(str(i), v) for i, v in enumerate(verdicts)]
    decision = await Pipeline(checks).run(Stage.DATA, CLIENT, TXN, Message(b"\r\n"))
    assert decision.verdict.action is action


def test_a_verdict_reply_class_matches_its_action() -> None:
    with pytest.raises(ValueError, match="5xx"):
        reject(S.RATE_LIMITED, "a 4xx is not a reject")
    with pytest.raises(ValueError, match="4xx"):
        defer(S.RELAY_DENIED, "a 5xx is not a defer")


@pytest.mark.parametrize(
    ("data", "header", "body"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2", b"body\r\n"),
        (b"A: 1\r\n", b"A: 1\r\n", b""),  # no blank line: all header
        (b"\r\nbody", b"", b"body"),
    ],
)
def test_message_header_and_body(data: bytes, header: bytes, body: bytes) -> None:
    message = Message(data)
    assert (message.header, message.body) == (header, body)
    end, start = split_header(data)
    assert data[:end] == header and data[start:] == body


def test_message_headers_are_unfolded() -> None:
    message = Message(b"Subject: one\r\n two\r\nFrom: a@b\r\n\r\n")
    assert message.get_all("subject") == ["one two"] and message.get_all("FROM") == ["a@b"]


def test_load_check_names_the_table_when_the_path_is_wrong() -> None:
    with pytest.raises(ConfigError, match=r"check\[0\]"):
        load_check("no.such.module:Check", {}, key="check[0]")
    with pytest.raises(ConfigError, match="form"):
        load_check("postier.policy", {})
    with pytest.raises(ConfigError, match="stage methods"):
        load_check("collections:OrderedDict", {})


def test_load_check_passes_its_options() -> None:
    check = load_check("examples.postier_checks:SubjectFilter", {"words": ["viagra"]})
    assert check.name == "subject-filter"


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_client_key_counts_ipv6_per_64(ip: str, key: str) -> None:
    from postier.policy.admission import client_key

    assert client_key(ip, 64) == key


def test_one_ipv6_64_cannot_take_every_slot() -> None:
    from postier.policy.admission import Admission, ConnectionLimits

    admission, limits = Admission(), ConnectionLimits(max_connections=100, max_connections_per_ip=3)
    results = [admission.admit(f"2001:db8::{i:x}", limits, rate_limited=True)[1] for i in range(1, 6)]
    assert [r is None for r in results] == [True, True, True, False, False]
    assert admission.admit("2001:db8:0:1::1", limits, rate_limited=True)[1] is None  # another /64
    key = admission.admit("192.0.2.1", limits, rate_limited=True)[0]
    admission.release(key)
    assert admission.total == 4 and admission.count("192.0.2.1") == 0


class Waits:
    """One asynchronous check that waits several times (DNS, then a cache), then answers or raises."""

    name = "waits"

    def __init__(self, verdict: Verdict | None, waits: int = 3) -> None:
        self.verdict, self.waits = verdict, waits
        self.cancelled = False

    async def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        try:
            for _ in range(self.waits):
                await asyncio.sleep(0)
            await asyncio.get_running_loop().run_in_executor(None, lambda: None)  # a real future
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.verdict is None:
            raise LookupError("the lookup broke after waiting")
        return self.verdict


async def test_a_lone_async_check_that_waits_is_followed_to_its_answer() -> None:
    decision = await Pipeline([Waits(reject(S.RELAY_DENIED, "no"))]).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.action is Action.REJECT and decision.verdict.check == "waits"


async def test_a_lone_async_check_that_raises_after_waiting_defers() -> None:
    decision = await Pipeline([Waits(None)]).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert decision.verdict.reply == S.POLICY_TEMPFAIL
    assert decision.verdict.reason == "check failed: LookupError"


class Hangs:
    """An asynchronous check that never answers; says whether it was cancelled."""

    name = "hangs"

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.cancelled = False

    async def on_rcpt(self, client: Client, txn: Transaction, rcpt: Recipient) -> Verdict:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("never answered")


async def test_a_lone_async_check_past_the_deadline_is_cancelled() -> None:
    hangs = Hangs()
    decision = await Pipeline([hangs], timeouts_s={Stage.RCPT: 0.01}).run(Stage.RCPT, CLIENT, TXN, RCPT)
    assert "no answer within" in decision.verdict.reason
    assert hangs.cancelled


async def test_cancelling_the_session_cancels_the_check_it_waits_on() -> None:
    hangs = Hangs()
    run = asyncio.ensure_future(Pipeline([hangs]).run(Stage.RCPT, CLIENT, TXN, RCPT))
    await hangs.waiting.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert hangs.cancelled
