"""Metrics derived from mail events: each event moves the counters an operator would watch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from postier.observe import mail_event, subscribe
from postier.observe.metrics import MailMetrics, split_reply, status_class


@pytest.fixture
def metrics() -> Iterator[MailMetrics]:
    m = MailMetrics(CollectorRegistry())
    unsubscribe = subscribe(m.on_event)
    yield m
    unsubscribe()


def value(m: MailMetrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.mark.parametrize(
    ("reply", "code", "status", "klass"),
    [
        ("554 5.7.1 Relay access denied", "554", "5.7.1", "5.7"),
        ("451 4.4.0 outbound delivery is not available yet", "451", "4.4.0", "4.4"),
        ("250 2.0.0 Ok: queued as X", "250", "2.0.0", "2.0"),
        ("550 no enhanced code", "550", "", "5"),
        ("550 5.1.1234 not a status", "550", "", "5"),
        ("hello", "", "", ""),
        (None, "", "", ""),
    ],
)
def test_replies_split_into_bounded_labels(reply: str | None, code: str, status: str, klass: str) -> None:
    assert split_reply(reply) == (code, status)
    assert status_class(reply) == klass


def test_a_session_counts_connection_message_bytes_and_latency(metrics: MailMetrics) -> None:
    where = {"listener": "smtp", "address": "127.0.0.1:25"}
    mail_event("connect", sid="s1", remote="192.0.2.1:4000", listener="smtp", local="127.0.0.1:25")
    assert value(metrics, "postier_connections_open", **where) == 1
    mail_event("queued", sid="s1", id="Q1", from_="<a@b.test>", size=300, nrcpt=2, duration_s=0.02)
    mail_event("queued", sid="s1", id="Q2", from_="<a@b.test>", size=200, nrcpt=1, duration_s=0.5)
    mail_event("disconnect", sid="s1", remote="192.0.2.1:4000", commands=9, duration_s=1.0, reason="quit")
    assert value(metrics, "postier_connections_total", **where) == 1
    assert value(metrics, "postier_connections_open", **where) == 0
    assert value(metrics, "postier_messages_accepted_total", listener="smtp") == 2
    assert value(metrics, "postier_recipients_accepted_total", listener="smtp") == 3
    assert value(metrics, "postier_received_bytes_total", listener="smtp") == 500
    hist = "postier_smtp_transaction_duration_seconds"
    assert value(metrics, f"{hist}_count", listener="smtp") == 2
    assert value(metrics, f"{hist}_bucket", listener="smtp", le="0.025") == 1


def test_rejects_are_counted_by_stage_code_and_status_and_client_verbs_stay_bounded(
    metrics: MailMetrics,
) -> None:
    mail_event("reject", sid="s2", stage="rcpt", rcpt="<x@far.test>", reply="554 5.7.1 Relay access denied")
    mail_event("reject", sid="s2", stage="rcpt", rcpt="<y@far.test>", reply="554 5.7.1 Relay access denied")
    mail_event("reject", sid="s2", stage="xyzzy-client-text", reply="500 5.5.2 Syntax error")
    name = "postier_smtp_rejects_total"
    assert value(metrics, name, stage="rcpt", code="554", status="5.7.1") == 2
    assert value(metrics, name, stage="other", code="500", status="5.5.2") == 1


def test_deliveries_auth_tls_and_queue_sizes(metrics: MailMetrics) -> None:
    mail_event("delivery", id="Q1", rcpt="<a@x.test>", result="delivered", reply="250 2.0.0 ok", delay_s=3.0)
    mail_event(
        "delivery",
        id="Q2",
        rcpt="<b@y.test>",
        result="deferred",
        reply="451 4.4.1 no answer",
        duration_s=30.0,
    )
    mail_event("auth", sid="s3", mechanism="PLAIN", user="u", result="failed")
    mail_event("tls", sid="s3", version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384")
    metrics.set_queue({"active": 4, "held": 1}, {"queued": 2, "deferred": 3})
    assert value(metrics, "postier_delivery_attempts_total", result="delivered", status="2.0") == 1
    assert value(metrics, "postier_delivery_attempts_total", result="deferred", status="4.4") == 1
    assert value(metrics, "postier_delivery_queue_delay_seconds_count", result="delivered") == 1
    assert value(metrics, "postier_delivery_attempt_duration_seconds_sum", result="deferred") == 30.0
    assert value(metrics, "postier_auth_attempts_total", result="failed") == 1
    assert value(metrics, "postier_tls_handshakes_total", result="ok") == 1
    assert value(metrics, "postier_queue_messages", status="active") == 4
    assert value(metrics, "postier_queue_recipients", state="deferred") == 3


def test_leases_by_node_of_a_cluster(metrics: MailMetrics) -> None:
    metrics.set_leases({"mx1": 12, "mx2": 3})
    assert value(metrics, "postier_queue_leased_recipients", node="mx1") == 12
    metrics.set_leases({"mx2": 5})  # mx1 delivers nothing now (or died and its leases ran out)
    assert value(metrics, "postier_queue_leased_recipients", node="mx1") == 0
    assert value(metrics, "postier_queue_leased_recipients", node="mx2") == 5


def test_a_failing_subscriber_does_not_stop_the_mail_log(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_event: str, _fields: object) -> None:
        raise RuntimeError("boom")

    unsubscribe = subscribe(broken)
    try:
        mail_event("stopped")
    finally:
        unsubscribe()
    assert "subscriber failed" in caplog.text
    mail_event("stopped")  # unsubscribed: nothing more is logged about it
    assert caplog.text.count("subscriber failed") == 1


def test_bounces_count_recipients_by_action_and_whether_anyone_was_told(metrics: MailMetrics) -> None:
    for rcpt in ("<a@x.test>", "<b@x.test>"):
        mail_event("bounce", id="Q1", rcpt=rcpt, action="failed", to="<s@y.test>", bounce_id="Q2")
    mail_event("bounce", id="Q3", rcpt="<c@x.test>", action="delayed", to="<s@y.test>", bounce_id="Q4")
    mail_event("bounce", id="Q2", rcpt="<s@y.test>", action="failed", result="dropped", reason="nobody")
    assert value(metrics, "postier_bounces_total", action="failed", result="queued") == 2
    assert value(metrics, "postier_bounces_total", action="delayed", result="queued") == 1
    assert value(metrics, "postier_bounces_total", action="failed", result="dropped") == 1
