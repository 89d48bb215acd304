"""The pipeline: which checks are asked at each stage, in what order, and how their verdicts combine.

The rule, in one place:

1. At each stage the checks that implement it are asked: first every synchronous check, in the
   configured order — the first refusal (reject or defer) ends the stage and later checks are not
   asked; then every asynchronous check (DNS, network), all started at once and awaited under the
   stage's deadline. Their verdicts are read in the configured order, so the result never depends on
   which answered first: again the first refusal wins. Cheap checks first, so a spam bot costs little.
2. Without a refusal the stage accepts, carrying every ``tag`` (headers in check order, scores added,
   message edits in check order),
   and at the data stage ``quarantine`` (if any check asked for it) or ``discard`` (likewise; discard
   wins over quarantine).
3. A check that raises, or has not answered by the deadline, gives its failure verdict: ``defer``
   with ``451 4.3.0`` (``421 4.3.0`` at connect) by default, or ``accept`` when the check says
   ``on_failure = "accept"``. The exception is logged with its traceback, never sent to the client.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from postier.mail.replies import S
from postier.observe import get_logger
from postier.policy.check import Stage
from postier.policy.verdict import ACCEPT, Action, Verdict, defer

__all__ = ["DEFAULT_TIMEOUTS_S", "Decision", "Pipeline"]

_log = get_logger("postier.policy")

DEFAULT_TIMEOUTS_S: Mapping[Stage, float] = {
    Stage.CONNECT: 10.0,
    Stage.HELO: 10.0,
    Stage.MAIL: 20.0,
    Stage.RCPT: 20.0,
    Stage.DATA: 60.0,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What a stage decided: ``verdict`` is the one to act on; ``verdicts`` every verdict that was not a
    plain accept, in check order (for the log)."""

    verdict: Verdict
    verdicts: tuple[Verdict, ...] = ()

    @property
    def is_refusal(self) -> bool:
        return self.verdict.is_refusal


_ACCEPTED = Decision(ACCEPT)


@dataclass(frozen=True, slots=True)
class _Step:
    name: str
    call: Callable[..., Any]
    on_failure: str
    accepted: Verdict
    """``ACCEPT`` by this check: what a plain accept becomes, built once rather than per call."""

    def crashed(self, stage: Stage, exc: BaseException) -> Verdict:
        """The check raised ``exc``: logged with its traceback (never sent), its failure verdict."""
        _log.error("check %s failed at %s: %r", self.name, stage, exc, exc_info=exc)
        return self.failed(stage, f"check failed: {type(exc).__name__}")

    def failed(self, stage: Stage, why: str) -> Verdict:
        if self.on_failure == "accept":
            return Verdict(Action.ACCEPT, reason=f"{why}; skipped", check=self.name)
        reply = S.POLICY_TEMPFAIL_CONNECT if stage is Stage.CONNECT else S.POLICY_TEMPFAIL
        return defer(reply, why).by(self.name)


class Pipeline:
    def __init__(self, checks: Iterable[object], *, timeouts_s: Mapping[Stage, float] = DEFAULT_TIMEOUTS_S):
        self.checks = tuple(checks)
        self.timeouts_s = dict(DEFAULT_TIMEOUTS_S) | dict(timeouts_s)
        self._sync: dict[Stage, tuple[_Step, ...]] = {}
        self._async: dict[Stage, tuple[_Step, ...]] = {}
        for stage in Stage:
            steps = [_step(check, stage) for check in self.checks if hasattr(check, stage.method)]
            self._sync[stage] = tuple(s for s in steps if not inspect.iscoroutinefunction(s.call))
            self._async[stage] = tuple(s for s in steps if inspect.iscoroutinefunction(s.call))

    def names(self, stage: Stage) -> tuple[str, ...]:
        """The checks asked at ``stage``, in the order they are asked."""
        return tuple(s.name for s in self._sync[stage] + self._async[stage])

    async def run(self, stage: Stage, *args: object) -> Decision:
        """Ask the checks of ``stage`` with ``args`` (the stage method's arguments)."""
        sync, asyn = self._sync[stage], self._async[stage]
        if not sync and not asyn:
            return _ACCEPTED
        verdicts: list[Verdict] = []
        for step in sync:
            try:
                result = step.call(*args)
                if not isinstance(result, Verdict):  # a plain method that returned an awaitable
                    result = await result
            except Exception as exc:
                verdict = step.crashed(stage, exc)
            else:
                verdict = _checked(step, stage, result)
            if verdict.is_refusal:
                return Decision(verdict, (*_noted(verdicts), verdict))
            verdicts.append(verdict)
        if asyn:
            for verdict in await self._ask_async(asyn, stage, args):
                if verdict.is_refusal:
                    return Decision(verdict, (*_noted(verdicts), verdict))
                verdicts.append(verdict)
        return _combine(verdicts)

    async def _ask_async(
        self, steps: tuple[_Step, ...], stage: Stage, args: tuple[object, ...]
    ) -> list[Verdict]:
        if len(steps) == 1:  # the usual case: no task of its own, the deadline as a timer
            return [await self._ask_one(steps[0], stage, args)]
        tasks = [asyncio.ensure_future(cast(Awaitable[Verdict], step.call(*args))) for step in steps]
        _done, pending = await asyncio.wait(tasks, timeout=self.timeouts_s[stage])
        for task in pending:
            task.cancel()
        verdicts = []
        for step, task in zip(steps, tasks, strict=True):
            if task in pending:
                verdicts.append(step.failed(stage, f"no answer within {self.timeouts_s[stage]:g}s"))
                continue
            exc = task.exception()
            if exc is not None:
                verdicts.append(step.crashed(stage, exc))
                continue
            verdicts.append(_checked(step, stage, task.result()))
        return verdicts

    async def _ask_one(self, step: _Step, stage: Stage, args: tuple[object, ...]) -> Verdict:
        """One asynchronous check (what ``_ask_async`` does for several): its first step at once, and if
        it then waits, the rest under the stage's deadline."""
        limit_s = self.timeouts_s[stage]
        coro = cast(Coroutine[Any, Any, Verdict], step.call(*args))
        try:  # its first step, here: most answer without waiting (a trusted client, a cached result)
            first = coro.send(None)
        except StopIteration as done:
            return _checked(step, stage, done.value)
        except Exception as exc:
            return step.crashed(stage, exc)
        deadline = asyncio.timeout(limit_s)  # it waits: the rest under the stage's deadline
        try:
            async with deadline:
                result = await _resume(coro, first)
        except TimeoutError as exc:
            if deadline.expired():
                return step.failed(stage, f"no answer within {limit_s:g}s")
            return step.crashed(stage, exc)
        except Exception as exc:
            return step.crashed(stage, exc)
        return _checked(step, stage, result)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Verdict], waiting: Any) -> Generator[Any, Any, Verdict]:
    """Go on with ``coro``, suspended on ``waiting`` after its first step: the task awaiting this sees
    each of its waits and resumes it (or throws into it: a cancellation), as ``await coro`` would."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                waiting = coro.throw(exc)
            except StopIteration as done:
                return cast(Verdict, done.value)
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return cast(Verdict, done.value)


def _step(check: object, stage: Stage) -> _Step:
    name = str(getattr(check, "name", type(check).__name__))
    call = getattr(check, stage.method)
    return _Step(name, call, str(getattr(check, "on_failure", "defer")), ACCEPT.by(name))


def _checked(step: _Step, stage: Stage, result: object) -> Verdict:
    if result is ACCEPT:
        return step.accepted
    if not isinstance(result, Verdict):
        _log.error("check %s returned %r, not a Verdict", step.name, result)
        return step.failed(stage, "check returned no verdict")
    return result.by(step.name)


def _noted(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.action is not Action.ACCEPT or v.reason]


def _combine(verdicts: list[Verdict]) -> Decision:
    noted = _noted(verdicts)
    if not noted:
        return _ACCEPTED
    actions = {v.action for v in noted}
    action = Action.ACCEPT
    for candidate in (Action.TAG, Action.QUARANTINE, Action.DISCARD):  # the strongest last
        if candidate in actions:
            action = candidate
    headers = tuple(h for v in noted for h in v.headers)
    edits = tuple(e for v in noted for e in v.edits)
    score = sum(v.score for v in noted)
    reason = "; ".join(f"{v.check}: {v.reason}" for v in noted if v.reason)
    if action is Action.ACCEPT and not headers and not edits:
        return Decision(ACCEPT, tuple(noted))
    return Decision(
        Verdict(action, None, reason, headers, score, check="pipeline", edits=edits), tuple(noted)
    )
