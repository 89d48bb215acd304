"""The TLS plan's precedence (DANE > MTA-STS > delivery.tls_policy > delivery.tls), with fakes of the
``MtaSts`` and ``DaneHosts`` halves; and REQUIRETLS / TLS-Required: No decisions on its result."""

from __future__ import annotations

import dataclasses

import pytest

from postier.delivery.requiretls import is_relaxed, refusal_before_connecting, relaxed
from postier.delivery.security.dane import Tlsa
from postier.delivery.security.mtasts import StsMode, StsPolicy
from postier.delivery.security.mtasts_lookup import StsAnswer
from postier.delivery.security.plan import TlsPlanner
from postier.delivery.transport import Destination, DestinationKind, Hop, OutboundMessage, TlsPolicy
from postier.mail.address import Address
from postier.mail.envelope import Envelope, Recipient

TLSA = (Tlsa(3, 1, 1, b"\1" * 32),)


class Sts:
    def __init__(self, answer: StsAnswer) -> None:
        self.answer = answer

    async def policy(self, domain: str) -> StsAnswer:
        return self.answer


class Dane:
    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts

    async def plan_hops(self, domain: str, hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
        return tuple(
            dataclasses.replace(h, tlsa=TLSA, tls_label="dane", tls_source=f"dnssec:_25._tcp.{h.host}")
            if h.host in self.hosts
            else h
            for h in hops
        )


def destination(tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC, source: str = "config:delivery.tls") -> Destination:
    hops = (Hop("mx1.d.test"), Hop("mx2.d.test"))
    return Destination(
        "mx:d.test", DestinationKind.MX, "d.test", hops, tls, tls_label=tls.value, tls_source=source
    )


def sts(mode: StsMode, *mx: str) -> StsAnswer:
    return StsAnswer(StsPolicy(mode, 86400, mx), "id1", "fetched")


def planner(answer: StsAnswer | None = None, dane: set[str] | None = None) -> TlsPlanner:
    return TlsPlanner(
        Sts(answer) if answer is not None else None,  # type: ignore[arg-type]
        Dane(dane) if dane is not None else None,
    )


def labels(d: Destination) -> list[tuple[str, str, str, bool]]:
    return [
        (h.host, h.tls_label or d.tls_label, (h.tls or d.tls).value, h.refusal is not None) for h in d.hosts
    ]


async def test_configuration_alone() -> None:
    plan = await planner(StsAnswer(None)).plan(destination(TlsPolicy.VERIFY, "config:delivery.tls_policy"))
    assert (plan.key, plan.tls_label, plan.tls_source) == (
        "mx:d.test",
        "verify",
        "config:delivery.tls_policy",
    )


async def test_mta_sts_enforce_beats_configuration_and_refuses_unnamed_hosts() -> None:
    plan = await planner(sts(StsMode.ENFORCE, "mx1.d.test")).plan(destination(TlsPolicy.NONE))
    assert (plan.key, plan.tls_label, plan.tls_source) == ("mx:d.test/mta-sts", "mta-sts", "mta-sts:id=id1")
    assert labels(plan) == [
        ("mx1.d.test", "mta-sts", "verify", False),
        ("mx2.d.test", "mta-sts", "verify", True),
    ]
    assert plan.refusal is None


async def test_mta_sts_naming_no_host_refuses_the_destination() -> None:
    plan = await planner(sts(StsMode.ENFORCE, "*.elsewhere.test")).plan(destination())
    assert plan.refusal is not None and str(plan.refusal.status) == "4.7.5"


@pytest.mark.parametrize(
    ("mode", "label"), [(StsMode.TESTING, "mta-sts-testing"), (StsMode.NONE, "opportunistic")]
)
async def test_testing_and_none_keep_the_configured_policy(mode: StsMode, label: str) -> None:
    plan = await planner(sts(mode, "other.test")).plan(destination())
    assert plan.tls_label == label and plan.tls is TlsPolicy.OPPORTUNISTIC and plan.refusal is None
    assert all(h.refusal is None for h in plan.hosts)


async def test_dane_beats_mta_sts_per_host() -> None:
    plan = await planner(sts(StsMode.ENFORCE, "mx1.d.test"), dane={"mx2.d.test"}).plan(destination())
    assert plan.key == "mx:d.test/dane/mta-sts"
    assert labels(plan) == [
        ("mx1.d.test", "mta-sts", "verify", False),
        ("mx2.d.test", "dane", "verify", False),
    ]
    assert plan.hosts[1].tlsa == TLSA


def message(header: bytes = b"", requiretls: bool = False) -> OutboundMessage:
    env = Envelope(Address("a", "s.test"), (Recipient(Address("b", "d.test")),), requiretls=requiretls)
    return OutboundMessage("Q1", env, header + b"Subject: x\r\n\r\nbody\r\n")


async def test_requiretls_needs_dane_or_mta_sts() -> None:
    assert refusal_before_connecting(destination(TlsPolicy.VERIFY)) is not None  # configured verify: no
    enforce = await planner(sts(StsMode.ENFORCE, "mx1.d.test")).plan(destination())
    assert refusal_before_connecting(enforce) is None
    dane = await planner(dane={"mx1.d.test"}).plan(destination())
    assert refusal_before_connecting(dane) is None


async def test_tls_required_no_lifts_policies_unless_requiretls() -> None:
    assert is_relaxed(message(b"TLS-Required: No\r\n"))
    assert is_relaxed(message(b"tls-required:no\r\n"))
    assert not is_relaxed(message(b"TLS-Required: No\r\n", requiretls=True))
    assert not is_relaxed(message(b"X: y\r\n")) and not is_relaxed(message(b"\r\nTLS-Required: No\r\n"))
    plan = await planner(sts(StsMode.ENFORCE, "mx9.d.test"), dane={"mx2.d.test"}).plan(destination())
    loose = relaxed(plan)
    assert (loose.key, loose.tls_label, loose.tls_source) == (
        "mx:d.test/relaxed",
        "opportunistic",
        "header:TLS-Required",
    )
    assert (
        all(h.refusal is None and not h.tlsa and h.tls is None for h in loose.hosts) and loose.refusal is None
    )
