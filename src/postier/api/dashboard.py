"""The web dashboard, ``/ui``: server-rendered pages (Jinja2, no script, charts in plain SVG).

Same keys as the API (scope ``read``): a browser logs in once with its key, kept in an HttpOnly,
SameSite=Strict cookie for ``/ui`` (Secure over HTTPS); a client may also send ``Authorization``.
Read-only: changing the queue stays with the API and the CLI (no form here can be forged across sites
to do harm). Pages: the queue overview (by state, by destination and age, oldest pending, recent), a
message's timeline (every attempt with its reply explained), delivery rates and deferral reasons per
destination (the event log), the suppression list, the DKIM keys and their DNS state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from postier.api.context import ApiContext
from postier.api.messages import message_json
from postier.api.problems import Problem, authorize, read_body
from postier.api.suppressroutes import to_json
from postier.control import queue_ops
from postier.mail.errors import UnknownMessageError
from postier.queue import AGE_BUCKETS_MIN, MessageStatus, QueueFilter

__all__ = ["destinations", "dkim", "login", "login_page", "logout", "message", "overview", "suppressions"]

COOKIE = "postier_key"
_env = Environment(
    loader=PackageLoader("postier.api", "templates"), autoescape=select_autoescape(default=True)
)


def _explain(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    entry = data.get("enhanced") or data.get("basic") or {}
    meaning = str(entry.get("meaning", "")) if isinstance(entry, dict) else ""
    return f"{meaning} — {data.get('retry', '')}".strip(" —")


_env.globals["explain"] = _explain


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**values), status_code=status)


def _ctx(request: Request) -> ApiContext | Response:
    """The context when the request carries a key with scope read; else the way to the login page."""
    ctx: ApiContext = request.app.state.ctx
    try:
        authorize(request, ctx.keys, "read", fallback=request.cookies.get(COOKIE))
    except Problem as exc:
        if exc.status in (401, 403):
            return RedirectResponse("/ui/login", status_code=303)
        raise
    return ctx


async def login_page(request: Request) -> Response:
    return _page("login.html", title="Log in", error="")


async def login(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    form = parse_qs((await read_body(request, 4096)).decode("utf-8", "replace"))
    secret = (form.get("key") or [""])[0].strip()
    key = ctx.keys.lookup(secret) if secret else None
    if key is None or not key.allows("read"):
        return _page("login.html", 401, title="Log in", error="This key does not open the dashboard.")
    response = RedirectResponse("/ui", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=secure, path="/ui")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def _buckets() -> list[str]:
    return [f"< {m} min" for m in AGE_BUCKETS_MIN] + [f"≥ {AGE_BUCKETS_MIN[-1]} min"]


async def overview(request: Request) -> Response:
    ctx = _ctx(request)
    if isinstance(ctx, Response):
        return ctx
    stats = queue_ops.stats_to_json(await ctx.queue.stats())
    oldest = await ctx.queue.list_messages(QueueFilter(status=MessageStatus.ACTIVE), limit=20)
    day = datetime.now(UTC) - timedelta(days=1)
    recent = await ctx.queue.list_messages(QueueFilter(arrived_after=day), limit=2000)
    return _page(
        "overview.html",
        title="Queue",
        stats=stats,
        buckets=_buckets(),
        oldest=[queue_ops.summary_to_json(s) for s in oldest],
        recent=[queue_ops.summary_to_json(s) for s in reversed(recent[-50:])],
    )


async def message(request: Request) -> Response:
    ctx = _ctx(request)
    if isinstance(ctx, Response):
        return ctx
    try:
        data = await message_json(ctx, request.path_params["id"])
    except UnknownMessageError:
        return _page("base.html", 404, title="No such message in the queue")
    return _page("message.html", title=f"Message {data['id']}", m=data, events=data.get("events", []))


def _rates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        domain = str(e.get("recipient", "")).rpartition("@")[2].lower() or "?"
        counts[domain][e["type"]] += 1
        if e["type"] == "delay":
            reasons[domain][str(e.get("reply", ""))[:120]] += 1
    rows = []
    for domain, c in counts.items():
        total = c["delivery"] + c["delay"] + c["bounce"]
        rows.append(
            {
                "domain": domain,
                "total": total,
                "delivered": c["delivery"],
                "deferred": c["delay"],
                "failed": c["bounce"],
                "reasons": reasons[domain].most_common(5),
            }
        )
    return sorted(rows, key=lambda r: -int(str(r["total"])))[:40]


async def destinations(request: Request) -> Response:
    ctx = _ctx(request)
    if isinstance(ctx, Response):
        return ctx
    hours = 24
    events: list[dict[str, Any]] = []
    if ctx.events is not None:
        store = ctx.events
        events = await asyncio.to_thread(
            store.since, time.time() - hours * 3600, ("delivery", "delay", "bounce")
        )
    return _page("destinations.html", title="Destinations", rows=_rates(events), hours=hours)


async def suppressions(request: Request) -> Response:
    ctx = _ctx(request)
    if isinstance(ctx, Response):
        return ctx
    items = [] if ctx.suppressions is None else [to_json(s) for s in ctx.suppressions.list(500)]
    return _page("suppressions.html", title="Suppressions", enabled=ctx.suppressions is not None, items=items)


async def dkim(request: Request) -> Response:
    ctx = _ctx(request)
    if isinstance(ctx, Response):
        return ctx
    keys: list[dict[str, str]] = []
    error = ""
    if ctx.dkim_keys is not None:
        try:
            async with asyncio.timeout(15):
                keys = await ctx.dkim_keys()
        except Exception:  # DNS trouble: say so, keep the page
            error = "The DNS records could not be checked now."
    return _page("dkim.html", title="DKIM keys", keys=keys, error=error)
