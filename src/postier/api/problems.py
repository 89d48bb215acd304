"""Errors as RFC 9457 problem details (``application/problem+json``), and the request guards:
authentication by API key, the body-size cap.

Every error the API answers is a ``Problem``: ``type`` is a stable URI naming the kind of error (the
same for every instance; documented in docs/api.md), ``title`` its short human name, ``status`` the
HTTP code, ``detail`` what was wrong with this request. Nothing internal (paths, exceptions,
configuration) is ever put in a problem; the log has it.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from postier.control.apikeys import ApiKey, ApiKeyError, ApiKeyStore
from postier.observe import get_logger

__all__ = ["Problem", "authorize", "json_response", "problem_response", "read_body"]

_TYPE = "https://postier.dev/problems/"
_log = get_logger("postier.api")

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    411: "Length required",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error answered as problem details; ``kind`` is the last part of the ``type`` URI."""

    def __init__(self, status: int, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.extra = extra


def problem_response(problem: Problem, instance: str = "") -> Response:
    body: dict[str, Any] = {
        "type": _TYPE + problem.kind,
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    headers = {"WWW-Authenticate": 'Bearer realm="postier"'} if problem.status == 401 else None
    return Response(
        json.dumps(body), status_code=problem.status, media_type="application/problem+json", headers=headers
    )


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def authorize(request: Request, keys: ApiKeyStore, scope: str, *, fallback: str | None = None) -> ApiKey:
    """The key of a request (``Authorization: Bearer KEY``, else ``fallback``: the dashboard's
    cookie) if it has ``scope``; else a 401/403 Problem."""
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    if not header and fallback:
        kind, secret = "bearer", fallback
    if kind.lower() != "bearer" or not secret.strip():
        raise Problem(401, "unauthorized", "an API key is needed: Authorization: Bearer KEY")
    try:
        key = keys.lookup(secret.strip())
    except ApiKeyError:
        _log.exception("api: the key store cannot be read")
        raise Problem(503, "unavailable", "keys cannot be checked now") from None
    if key is None:
        raise Problem(401, "unauthorized", "unknown API key")
    if not key.allows(scope):
        raise Problem(403, "forbidden", f"this key lacks the {scope!r} scope")
    return key


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``max_bytes``: a client cannot make the
    server hold more than that, whatever Content-Length says or omits."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "bad-request", "Content-Length is not a number")
        if int(declared) > max_bytes:
            raise Problem(413, "too-large", f"the body is larger than {max_bytes} octets")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Problem(413, "too-large", f"the body is larger than {max_bytes} octets")
        chunks.append(chunk)
    return b"".join(chunks)
