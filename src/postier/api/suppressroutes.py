"""``/v1/suppressions``: the suppression list over HTTP (checks/suppression.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from postier.api.context import ApiContext
from postier.api.problems import Problem, authorize, json_response, read_body
from postier.checks.suppression import Suppression, SuppressionList
from postier.observe import mail_event

__all__ = ["add", "get", "list_all", "remove", "to_json"]


class _AddRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: str = "manual"
    expires_in_s: float | None = None


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def to_json(s: Suppression) -> dict[str, Any]:
    return {
        "address": s.address,
        "reason": s.reason,
        "source": s.source,
        "created_at": _iso(s.created_at),
        "expires_at": _iso(s.expires_at),
    }


def _list(request: Request, scope: str) -> SuppressionList:
    ctx: ApiContext = request.app.state.ctx
    authorize(request, ctx.keys, scope)
    if ctx.suppressions is None:
        raise Problem(404, "not-found", "the suppression list is off ([suppression] enabled)")
    return ctx.suppressions


async def list_all(request: Request) -> Response:
    store = _list(request, "read")
    try:
        limit = min(int(request.query_params.get("limit", "100")), 1000)
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise Problem(400, "bad-request", "limit and offset are numbers") from None
    items = store.list(limit + 1, offset)
    more = len(items) > limit
    return json_response(
        {"items": [to_json(s) for s in items[:limit]], "next": offset + limit if more else None}
    )


async def get(request: Request) -> Response:
    found = _list(request, "read").find(request.path_params["address"])
    if found is None:
        raise Problem(404, "not-found", "this address is not suppressed")
    return json_response(to_json(found))


async def add(request: Request) -> Response:
    store = _list(request, "admin")
    body = await read_body(request, 4096)
    try:
        req = msgspec.json.decode(body or b"{}", type=_AddRequest)
    except msgspec.DecodeError as exc:
        raise Problem(422, "invalid-request", str(exc)) from None
    address = request.path_params["address"].strip().lower()
    if "@" not in address or len(address) > 320:
        raise Problem(422, "invalid-request", "not an address")
    until = None if req.expires_in_s is None else time.time() + req.expires_in_s
    new = store.add(address, req.reason[:40], "api", until)
    mail_event("suppressed", rcpt=f"<{address}>", reason=req.reason[:40], source="api", until=_iso(until))
    found = store.find(address)
    assert found is not None
    return json_response(to_json(found), 201 if new else 200)


async def remove(request: Request) -> Response:
    if not _list(request, "admin").remove(request.path_params["address"]):
        raise Problem(404, "not-found", "this address is not suppressed")
    return Response(status_code=204)
