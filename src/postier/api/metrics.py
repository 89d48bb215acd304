"""Metrics of the HTTP API, in the same registry as the mail metrics (``metrics.address``):
``postier_api_requests{handler, method, status}`` and ``postier_api_request_seconds{handler, method}``,
and the webhooks' ``postier_webhook_posts{result}`` (ok | failed). ``handler`` is the name of the
function that answered (``send``, ``get_message``, ``overview``…) or ``none``: never a path, so a client
cannot invent label values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ApiMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "postier_api_requests",
            "HTTP API requests answered",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "postier_api_request_seconds",
            "Time to answer an HTTP API request",
            ["handler", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.webhook_posts = Counter(
            "postier_webhook_posts", "Webhook batches POSTed, by result", ["result"], registry=registry
        )

    def request(self, handler: str, method: str, status: int, seconds: float) -> None:
        method = method if method in ("GET", "POST", "PUT", "DELETE", "HEAD") else "other"
        self.requests.labels(handler, method, str(status)).inc()
        self.latency.labels(handler, method).observe(seconds)

    def webhook(self, ok: bool) -> None:
        self.webhook_posts.labels("ok" if ok else "failed").inc()
