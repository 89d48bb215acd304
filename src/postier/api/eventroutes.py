"""``GET /v1/events``: page through the event log (``after`` the last ``id`` seen)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from postier.api.context import ApiContext
from postier.api.problems import Problem, authorize, json_response
from postier.config.api import EVENT_TYPES

__all__ = ["list_events"]


async def list_events(request: Request) -> Response:
    ctx: ApiContext = request.app.state.ctx
    authorize(request, ctx.keys, "read")
    if ctx.events is None:
        raise Problem(404, "not-found", "the event log is off")
    q = request.query_params
    page_size = ctx.config().api.page_size
    try:
        after = int(q.get("after", "0"))
        limit = min(int(q.get("limit", str(page_size))), page_size)
    except ValueError:
        raise Problem(400, "bad-request", "after and limit are numbers") from None
    types = tuple(t for t in q.get("type", "").split(",") if t)
    if set(types) - set(EVENT_TYPES) or limit < 1 or after < 0:
        raise Problem(400, "bad-request", f"type is a comma-separated subset of {','.join(EVENT_TYPES)}")
    queue_id = q.get("queue_id") or None
    page = await asyncio.to_thread(ctx.events.page, after, limit, types, queue_id)
    more = len(page.items) == limit
    return json_response(
        {"items": page.items, "next": page.last_seq if more else None, "last": page.last_seq}
    )
