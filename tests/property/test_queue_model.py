"""The queue as a state machine, checked step by step against a plain-Python model."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient
from postier.queue import (
    MessageStatus,
    QueueId,
    RecipientResult,
    RecipientState,
    SqliteQueue,
    UnknownMessageError,
)

T = TypeVar("T")
T0 = datetime(2025, 3, 1, tzinfo=UTC)
LEASE_S = 60.0
DOMAINS = ("a.test", "b.test")


@dataclass
class Rcpt:
    state: RecipientState = RecipientState.QUEUED
    next_at: datetime | None = T0
    lease_until: datetime | None = None
    attempts: int = 0


@dataclass
class Message:
    body: bytes
    rcpts: list[Rcpt] = field(default_factory=list)
    held: bool = False

    @property
    def status(self) -> MessageStatus:
        if all(r.state.is_final for r in self.rcpts):
            return MessageStatus.DONE
        return MessageStatus.HELD if self.held else MessageStatus.ACTIVE


class QueueMachine(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="postier-queue-model-"))
        self.now = T0
        self.loop = asyncio.new_event_loop()
        self.queue = SqliteQueue(self.dir / "queue", clock=lambda: self.now)
        self.run(self.queue.open())
        self.model: dict[str, Message] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.queue.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        target=ids,
        body=st.binary(max_size=300),
        domains=st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=3),
    )
    def enqueue(self, body: bytes, domains: list[str]) -> str:
        rcpts = tuple(Recipient(Address(f"u{i}", d)) for i, d in enumerate(domains))
        qid = self.run(self.queue.enqueue(Envelope(Address("s", "x.test"), rcpts), body))
        rows = [Rcpt(next_at=self.now) for _ in rcpts]
        self.model[qid] = Message(body, rows)
        return qid

    @rule(seconds=st.sampled_from([1, 30, 61, 600, 4000]))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    def _due(self) -> set[tuple[str, int]]:
        return {
            (qid, i)
            for qid, m in self.model.items()
            if m.status is MessageStatus.ACTIVE
            for i, r in enumerate(m.rcpts)
            if not r.state.is_final
            and r.next_at is not None
            and r.next_at <= self.now
            and (r.lease_until is None or r.lease_until <= self.now)
        }

    @rule(limit=st.integers(1, 6))
    def claim(self, limit: int) -> None:
        due = self._due()
        claims = self.run(self.queue.claim(self.now, LEASE_S, limit))
        got = [(r.message_id, r.index) for c in claims for r in c.recipients]
        assert len(got) == min(limit, len(due)) and set(got) <= due
        assert all(c.domain in DOMAINS for c in claims)
        assert len({c.domain for c in claims}) == len(claims)  # one group per destination
        for qid, i in got:
            self.model[qid].rcpts[i].lease_until = self.now + timedelta(seconds=LEASE_S)

    @rule(
        qid=ids,
        index=st.integers(0, 2),
        state=st.sampled_from([RecipientState.DELIVERED, RecipientState.DEFERRED, RecipientState.FAILED]),
        delay=st.integers(0, 900),
    )
    def record(self, qid: str, index: int, state: RecipientState, delay: int) -> None:
        next_at = self.now + timedelta(seconds=delay) if state is RecipientState.DEFERRED else None
        result = RecipientResult(QueueId(qid), index, state, f"reply {state}", next_at)
        applied = self.run(self.queue.record([result]))
        message = self.model.get(qid)
        if message is None or index >= len(message.rcpts) or message.rcpts[index].state.is_final:
            assert applied == 0
            return
        assert applied == 1
        rcpt = message.rcpts[index]
        rcpt.state, rcpt.next_at, rcpt.lease_until = state, next_at, None
        rcpt.attempts += 1

    @rule(qid=ids, action=st.sampled_from(["hold", "release", "retry", "delete"]))
    def act(self, qid: str, action: str) -> None:
        message = self.model.get(qid)
        try:
            self.run(getattr(self.queue, action)(QueueId(qid)))
        except UnknownMessageError:
            assert message is None
            return
        assert message is not None
        if action == "hold" and message.status is MessageStatus.ACTIVE:
            message.held = True
        elif action == "release":
            message.held = False
        elif action == "retry":
            for r in message.rcpts:
                if not r.state.is_final:
                    r.next_at = self.now
        elif action == "delete":
            del self.model[qid]

    @invariant()
    def matches_model(self) -> None:
        listed = self.run(self.queue.list_messages())
        assert [m.id for m in listed] == sorted(self.model)
        for summary in listed:
            message = self.model[summary.id]
            assert summary.status is message.status
            assert summary.pending == sum(not r.state.is_final for r in message.rcpts)

    @rule(qid=ids)
    def get_matches(self, qid: str) -> None:
        message = self.model.get(qid)
        if message is None:
            return
        record = self.run(self.queue.get(QueueId(qid)))
        assert [r.state for r in record.recipients] == [r.state for r in message.rcpts]
        assert [r.attempts for r in record.recipients] == [r.attempts for r in message.rcpts]
        assert [r.next_attempt_at for r in record.recipients] == [
            None if r.state.is_final else r.next_at for r in message.rcpts
        ]
        assert self.run(self.queue.read_body(QueueId(qid))) == message.body


QueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_queue_model = QueueMachine.TestCase
