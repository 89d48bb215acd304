"""The pure MX decisions: ordering, implicit MX, null MX, errors, the loop rule."""

from __future__ import annotations

import random

import pytest

from postier.dns import (
    DNS_TEMPORARY_FAILURE,
    MX_LOOP,
    NO_SUCH_DOMAIN,
    NULL_MX,
    DnsError,
    MxPlan,
    MxRecord,
    NoData,
    NxDomain,
    TemporaryDnsError,
    drop_self,
    mx_targets,
    resolve_mx,
    select_mx,
)
from postier.mail.reply import Reply

R = MxRecord


@pytest.mark.parametrize(
    ("answer", "hosts", "reply", "is_implicit"),
    [
        ([R(20, "b.test"), R(10, "a.test")], ("a.test", "b.test"), None, False),
        ([R(10, "MX.Upper.test.")], ("mx.upper.test",), None, False),
        (NoData("d.test", "MX"), ("d.test",), None, True),
        ([], ("d.test",), None, True),
        ([R(0, ".")], (), NULL_MX, False),
        ([R(10, ".")], (), NULL_MX, False),
        ([R(0, "."), R(10, "real.test")], ("real.test",), None, False),
        (NxDomain("d.test", "MX"), (), NO_SUCH_DOMAIN, False),
        (TemporaryDnsError("d.test", "MX", "SERVFAIL"), (), DNS_TEMPORARY_FAILURE, False),
        (TemporaryDnsError("d.test", "MX", "timeout"), (), DNS_TEMPORARY_FAILURE, False),
    ],
)
def test_mx_targets(
    answer: list[MxRecord] | DnsError, hosts: tuple[str, ...], reply: Reply | None, is_implicit: bool
) -> None:
    plan = mx_targets("D.test.", answer, random.Random(0))
    assert plan.domain == "d.test"
    assert tuple(r.host for r in plan.hosts) == hosts
    assert plan.reply == reply
    assert plan.is_implicit is is_implicit


@pytest.mark.parametrize(
    ("reply", "code", "status", "is_failed", "is_deferred"),
    [
        (NULL_MX, 556, "5.1.10", True, False),
        (NO_SUCH_DOMAIN, 550, "5.1.2", True, False),
        (MX_LOOP, 554, "5.4.6", True, False),
        (DNS_TEMPORARY_FAILURE, 451, "4.4.3", False, True),
    ],
)
def test_decision_replies(reply: Reply, code: int, status: str, is_failed: bool, is_deferred: bool) -> None:
    assert (reply.code, str(reply.status)) == (code, status)
    plan = MxPlan("d.test", reply=reply)
    assert (plan.is_failed, plan.is_deferred) == (is_failed, is_deferred)


def test_select_mx_shuffles_only_within_one_preference() -> None:
    records = [R(10, f"a{i}.test") for i in range(4)] + [R(5, "best.test"), R(30, "last.test")]
    orders = set()
    for seed in range(30):
        hosts = [r.host for r in select_mx(records, random.Random(seed))]
        assert hosts[0] == "best.test" and hosts[-1] == "last.test"
        assert sorted(hosts[1:5]) == [f"a{i}.test" for i in range(4)]
        orders.add(tuple(hosts))
    assert len(orders) > 1


def test_select_mx_keeps_a_repeated_host_at_its_best_preference() -> None:
    records = [R(20, "x.test"), R(10, "x.test"), R(20, "y.test")]
    assert select_mx(records, random.Random(0)) == [R(10, "x.test"), R(20, "y.test")]


def test_select_mx_is_reproducible_with_the_same_seed() -> None:
    records = [R(10, f"h{i}.test") for i in range(6)]
    assert select_mx(records, random.Random(7)) == select_mx(records, random.Random(7))


@pytest.mark.parametrize(
    ("mx", "ours", "kept", "reply"),
    [
        ([R(10, "a.test"), R(20, "b.test")], ["me.test"], ("a.test", "b.test"), None),
        ([R(10, "a.test"), R(20, "me.test"), R(30, "c.test")], ["me.test"], ("a.test",), None),
        # RFC 5321 §5.1: records of the same preference as ours go too.
        ([R(10, "a.test"), R(20, "me.test"), R(20, "b.test")], ["ME.test."], ("a.test",), None),
        ([R(10, "me.test"), R(20, "b.test")], ["me.test"], (), MX_LOOP),
        ([R(10, "alias.test"), R(20, "b.test")], ["me.test", "alias.test"], (), MX_LOOP),
    ],
)
def test_drop_self(mx: list[MxRecord], ours: list[str], kept: tuple[str, ...], reply: Reply | None) -> None:
    plan = drop_self(mx_targets("d.test", mx, random.Random(0)), ours)
    assert tuple(r.host for r in plan.hosts) == kept
    assert plan.reply == reply


def test_drop_self_on_an_implicit_mx_that_is_us() -> None:
    plan = drop_self(mx_targets("me.test", NoData("me.test", "MX"), random.Random(0)), ["me.test"])
    assert plan.reply == MX_LOOP


def test_drop_self_leaves_a_decided_plan_alone() -> None:
    plan = MxPlan("d.test", reply=NULL_MX)
    assert drop_self(plan, ["d.test"]) is plan


class FakeResolver:
    """Implements the Resolver protocol from a table; names missing from it do not exist."""

    def __init__(self, mx: dict[str, list[MxRecord] | DnsError]) -> None:
        self._mx = mx

    async def mx(self, domain: str) -> list[MxRecord]:
        answer = self._mx.get(domain, NxDomain(domain, "MX"))
        if isinstance(answer, DnsError):
            raise answer
        return answer

    async def addresses(self, host: str) -> list[str]:
        raise NoData(host, "A/AAAA")

    async def txt(self, name: str) -> list[str]:
        raise NoData(name, "TXT")


@pytest.mark.parametrize(
    ("domain", "hosts", "reply"),
    [
        ("ok.test", ("mx.ok.test",), None),
        ("gone.test", (), NO_SUCH_DOMAIN),
        ("flaky.test", (), DNS_TEMPORARY_FAILURE),
        ("us.test", (), MX_LOOP),
    ],
)
async def test_resolve_mx_fetches_then_decides(
    domain: str, hosts: tuple[str, ...], reply: Reply | None
) -> None:
    resolver = FakeResolver(
        {
            "ok.test": [R(10, "mx.ok.test")],
            "flaky.test": TemporaryDnsError("flaky.test", "MX", "SERVFAIL"),
            "us.test": [R(10, "mx.me.test")],
        }
    )
    plan = await resolve_mx(resolver, domain, random.Random(0), local_names=["mx.me.test"])
    assert tuple(r.host for r in plan.hosts) == hosts
    assert plan.reply == reply
