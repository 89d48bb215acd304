"""Prometheus metrics, derived from the mail events, and the HTTP endpoint that serves them.

Theory of operation: the code that receives and delivers mail does not count anything itself; it
writes mail events (``observe/maillog.py``) and ``MailMetrics.on_event``, subscribed to them, turns
each event into counter, gauge and histogram updates. So the metrics and the mail log can never tell
different stories, and with metrics off (``metrics.address`` empty) nothing is subscribed and the
receive path pays nothing. Queue sizes are not events: the application refreshes them from the
queue's own counts every few seconds (``set_queue``).

Every metric lives in the ``CollectorRegistry`` given to ``MailMetrics`` (one per application, not
the process-global one), and ``MetricsServer`` serves that registry on ``GET /metrics`` from
prometheus_client's small threaded HTTP server, bound to the one configured address. A thread rather
than the event loop: rendering the text format is the HTTP thread's work, so a scrape never stalls
SMTP sessions, and prometheus_client's metric objects are thread-safe for exactly this use.

Label values are bounded: a stage a client could invent (an unknown command verb) is counted as
``other``, reply codes keep three digits and enhanced status codes their ``class.subject.detail``
shape, or are left empty; no address, host name or queue id ever becomes a label. Check names (the
``check`` label of ``postier_policy_verdicts``) come from the code and the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from postier.observe.maillog import subscribe

__all__ = ["KNOWN_STAGES", "LeaseCounts", "MailMetrics", "MetricsServer", "MetricsService", "QueueCounts"]

QueueCounts = Callable[[], Awaitable[tuple[Mapping[str, int], Mapping[str, int]]]]
LeaseCounts = Callable[[], Awaitable[Mapping[str, int]]]
"""Recipients each node holds a live lease on (``PostgresQueue.leases``)."""
"""Messages by status and recipients by state, from the queue (the application supplies it)."""
QUEUE_REFRESH_S = 10.0
_log = logging.getLogger("postier.observe")

# No "<counter>_created" series: they double the output and no Postier dashboard uses them. This is
# process-wide, and this module is imported only by a process that serves Postier's metrics.
disable_created_metrics()  # type: ignore[no-untyped-call]

KNOWN_STAGES = frozenset(
    {"connect", "helo", "ehlo", "auth", "mail", "rcpt", "data", "bdat", "starttls"}
    | {"rset", "noop", "vrfy", "expn", "help", "quit"}
)
_REPLY = re.compile(r"([2-5][0-9][0-9])(?:[ -]([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9.]))?")

# Seconds. The SMTP transaction (MAIL FROM to the 250 after the data) includes the client's upload
# and the queue's fsync; the time in queue runs from minutes to the 5-day expiry.
TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
QUEUE_DELAY_BUCKETS = (0.1, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 5 * 86400.0)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

Fields = Mapping[str, object]
_VERDICT_ACTIONS = frozenset({"accept", "tag", "quarantine", "discard"})


def split_reply(reply: object) -> tuple[str, str]:
    """``"554 5.7.1 Relay access denied"`` → ``("554", "5.7.1")``; ``("", "")`` for no reply."""
    match = _REPLY.match(str(reply or ""))
    if match is None:
        return "", ""
    code, klass, subject, detail = match.groups()
    return code, (f"{klass}.{subject}.{detail}" if klass else "")


def status_class(reply: object) -> str:
    """The class and subject of the enhanced status (RFC 3463 §2), e.g. ``"4.4"``; else the first digit
    of the reply code; else empty."""
    code, status = split_reply(reply)
    if status:
        return status.rsplit(".", 1)[0]
    return code[:1]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class MailMetrics:
    """The Postier metrics in ``registry``, kept up to date by ``on_event`` (a mail-event subscriber)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_open_fds, process_resident_memory_bytes, CPU seconds…
        where = ("listener", "address")
        self.connections = Counter("postier_connections", "SMTP connections accepted", where, registry=r)
        self.connections_open = Gauge(
            "postier_connections_open", "SMTP connections open now", where, registry=r
        )
        self.accepted = Counter(
            "postier_messages_accepted", "Messages queued (the client got 250)", ["listener"], registry=r
        )
        self.accepted_rcpts = Counter(
            "postier_recipients_accepted", "Recipients of the messages queued", ["listener"], registry=r
        )
        self.received_bytes = Counter(
            "postier_received_bytes", "Octets of message data queued", ["listener"], registry=r
        )
        self.rejects = Counter(
            "postier_smtp_rejects", "Refusals during SMTP sessions", ["stage", "code", "status"], registry=r
        )
        self.verdicts = Counter(
            "postier_policy_verdicts",
            "Verdicts of the policy checks other than a plain accept, by check and action (reject, defer,"
            " tag, quarantine, discard, accept: an accept with something to say, a skipped check)",
            ["check", "action"],
            registry=r,
        )
        self.auth = Counter("postier_auth_attempts", "AUTH attempts by result", ["result"], registry=r)
        self.tls = Counter("postier_tls_handshakes", "TLS handshakes by result", ["result"], registry=r)
        self.transaction = Histogram(
            "postier_smtp_transaction_duration_seconds",
            "Time from MAIL FROM to the 250 that queued the message",
            ["listener"],
            buckets=TRANSACTION_BUCKETS,
            registry=r,
        )
        self._init_delivery(r)
        self.queue_messages = Gauge("postier_queue_messages", "Messages in the queue", ["status"], registry=r)
        self.queue_recipients = Gauge(
            "postier_queue_recipients", "Recipients in the queue", ["state"], registry=r
        )
        self.queue_leased = Gauge(
            "postier_queue_leased_recipients",
            "Recipients each node of a cluster is delivering now (a PostgreSQL queue)",
            ["node"],
            registry=r,
        )
        self._lease_nodes: set[str] = set()
        self._sessions: dict[str, tuple[str, str]] = {}  # sid → labels, while connected
        self._handlers: dict[str, Callable[[Fields], None]] = {
            "connect": self._connect,
            "disconnect": self._disconnect,
            "queued": self._queued,
            "reject": self._reject,
            "verdict": self._verdict,
            "auth": self._auth,
            "tls": self._tls,
            "delivery": self._delivery,
            "bounce": self._bounce,
            "expired": lambda _f: self.expired.inc(),
        }

    def _init_delivery(self, r: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "postier_delivery_attempts",
            "Delivery attempts, one per recipient, by result and enhanced status class.subject",
            ["result", "status"],
            registry=r,
        )
        self.queue_delay = Histogram(
            "postier_delivery_queue_delay_seconds",
            "Time from arrival in the queue to the end of a delivery attempt",
            ["result"],
            buckets=QUEUE_DELAY_BUCKETS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "postier_delivery_attempt_duration_seconds",
            "Duration of one delivery attempt",
            ["result"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.bounces = Counter(
            "postier_bounces",
            "Recipients reported in delivery status notifications, by action (failed, delayed, relayed,"
            " delivered) and result (queued: a DSN was queued; dropped: nobody could be told)",
            ["action", "result"],
            registry=r,
        )
        self.expired = Counter("postier_expired", "Recipients failed for staying queued too long", registry=r)

    def _bounce(self, fields: Fields) -> None:
        result = "dropped" if fields.get("result") == "dropped" else "queued"
        self.bounces.labels(str(fields.get("action", "failed")), result).inc()

    # --- the subscriber ----------------------------------------------------------------------------

    def on_event(self, event: str, fields: Fields) -> None:
        """Update the metrics for one mail event (``observe.subscribe(metrics.on_event)``)."""
        handler = self._handlers.get(event)
        if handler is not None:
            handler(fields)

    def _listener(self, fields: Fields) -> str:
        return self._sessions.get(str(fields.get("sid", "")), ("", ""))[0]

    def _connect(self, fields: Fields) -> None:
        labels = (str(fields.get("listener", "")), str(fields.get("local", "")))
        self._sessions[str(fields.get("sid", ""))] = labels
        self.connections.labels(*labels).inc()
        self.connections_open.labels(*labels).inc()

    def _disconnect(self, fields: Fields) -> None:
        labels = self._sessions.pop(str(fields.get("sid", "")), None)
        if labels is not None:
            self.connections_open.labels(*labels).dec()

    def _queued(self, fields: Fields) -> None:
        listener = self._listener(fields)
        self.accepted.labels(listener).inc()
        self.accepted_rcpts.labels(listener).inc(_number(fields.get("nrcpt")) or 0)
        self.received_bytes.labels(listener).inc(_number(fields.get("size")) or 0)
        duration = _number(fields.get("duration_s"))
        if duration is not None:
            self.transaction.labels(listener).observe(duration)

    def _reject(self, fields: Fields) -> None:
        stage = str(fields.get("stage", ""))
        code, status = split_reply(fields.get("reply"))
        self.rejects.labels(stage if stage in KNOWN_STAGES else "other", code, status).inc()
        check = fields.get("check")
        if check:  # a refusal of the policy pipeline (the engine's own carry no check)
            self.verdicts.labels(str(check), "defer" if code.startswith("4") else "reject").inc()

    def _verdict(self, fields: Fields) -> None:
        action = str(fields.get("action", ""))
        if action not in _VERDICT_ACTIONS:
            action = "other"
        self.verdicts.labels(str(fields.get("check", "")), action).inc()

    def _auth(self, fields: Fields) -> None:
        result = str(fields.get("result", ""))
        self.auth.labels(
            result if result in ("ok", "failed", "cancelled", "locked", "busy", "authzid") else "other"
        ).inc()

    def _tls(self, fields: Fields) -> None:
        self.tls.labels("failed" if fields.get("result") == "failed" else "ok").inc()

    def _delivery(self, fields: Fields) -> None:
        result = str(fields.get("result", ""))
        if result not in ("delivered", "deferred", "failed"):
            result = "other"
        self.deliveries.labels(result, status_class(fields.get("reply"))).inc()
        delay = _number(fields.get("delay_s"))
        if delay is not None:
            self.queue_delay.labels(result).observe(delay)
        duration = _number(fields.get("duration_s"))
        if duration is not None:
            self.attempt_duration.labels(result).observe(duration)

    # --- not events ----------------------------------------------------------------------------------

    def set_queue(self, messages: Mapping[str, int], recipients: Mapping[str, int]) -> None:
        """Queue sizes: messages by status (active, held, done), recipients by state."""
        for status, count in messages.items():
            self.queue_messages.labels(status).set(count)
        for state, count in recipients.items():
            self.queue_recipients.labels(state).set(count)

    def set_leases(self, by_node: Mapping[str, int]) -> None:
        """Live leases by node (a cluster's queue); a node that holds none any more reads 0."""
        for node in self._lease_nodes - set(by_node):
            self.queue_leased.labels(node).set(0)
        for node, count in by_node.items():
            self.queue_leased.labels(node).set(count)
        self._lease_nodes |= set(by_node)


class MetricsServer:
    """``GET /metrics`` for one registry on ``host:port``, served from a daemon thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.host = host
        self.port = port
        self._registry = registry
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve; ``OSError`` when the address cannot be bound."""
        try:
            self._httpd, self._thread = start_http_server(self.port, addr=self.host, registry=self._registry)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics endpoint {self.host}:{self.port}: {exc.strerror}") from None
        self.port = int(self._httpd.server_address[1])

    def close(self) -> None:
        """Stop serving, close the socket and wait for the thread."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


class MetricsService:
    """Metrics on: ``start()`` subscribes a fresh ``MailMetrics`` to the mail events, binds the endpoint
    and refreshes the queue gauges every ``refresh_s``; ``close()`` undoes all three."""

    def __init__(
        self,
        host: str,
        port: int,
        queue_counts: QueueCounts,
        *,
        refresh_s: float = QUEUE_REFRESH_S,
        lease_counts: LeaseCounts | None = None,
    ) -> None:
        self.metrics = MailMetrics()
        self.server = MetricsServer(host, port, self.metrics.registry)
        self._queue_counts = queue_counts
        self._lease_counts = lease_counts
        self._refresh_s = refresh_s
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (``OSError`` when the address is taken), then subscribe and start refreshing."""
        self.server.start()
        self._unsubscribe = subscribe(self.metrics.on_event)
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever(), name="metrics-queue")

    async def _refresh_forever(self) -> None:
        while True:
            try:
                messages, recipients = await self._queue_counts()
            except Exception:
                _log.warning("metrics: cannot read the queue counts; will try again", exc_info=True)
            else:
                self.metrics.set_queue(messages, recipients)
            if self._lease_counts is not None:
                try:
                    self.metrics.set_leases(await self._lease_counts())
                except Exception:
                    _log.warning("metrics: cannot read the leases by node; will try again", exc_info=True)
            await asyncio.sleep(self._refresh_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.to_thread(self.server.close)
