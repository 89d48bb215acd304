"""The ASGI application: routes, errors as problem details, the request guard."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from postier.api import dashboard, messages, suppressroutes
from postier.api.context import ApiContext
from postier.api.eventroutes import list_events
from postier.api.guard import Guard
from postier.api.openapi import document
from postier.api.problems import Problem, json_response, problem_response
from postier.api.unsubscribe import unsubscribe_page, unsubscribe_post
from postier.observe import get_logger

__all__ = ["build_app", "routes"]

_log = get_logger("postier.api")


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "not-found", 405: "method-not-allowed"}
    problem = Problem(exc.status_code, kinds.get(exc.status_code, "bad-request"), str(exc.detail))
    return problem_response(problem, request.url.path)


async def _crash(request: Request, exc: Exception) -> Response:
    _log.error("api: %s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(Problem(500, "internal", "the request failed; see the server's log"))


async def _openapi(request: Request) -> Response:
    return json_response(document())


def routes() -> list[Route]:
    """Every route the API and the dashboard serve."""
    return [
        Route("/v1/openapi.json", _openapi, methods=["GET"]),
        Route("/ui", dashboard.overview, methods=["GET"]),
        Route("/ui/login", dashboard.login_page, methods=["GET"]),
        Route("/ui/login", dashboard.login, methods=["POST"]),
        Route("/ui/logout", dashboard.logout, methods=["GET"]),
        Route("/ui/messages/{id}", dashboard.message, methods=["GET"]),
        Route("/ui/destinations", dashboard.destinations, methods=["GET"]),
        Route("/ui/suppressions", dashboard.suppressions, methods=["GET"]),
        Route("/ui/dkim", dashboard.dkim, methods=["GET"]),
        Route("/v1/messages", messages.send, methods=["POST"]),
        Route("/v1/messages", messages.list_messages, methods=["GET"]),
        Route("/v1/messages/{id}", messages.get_message, methods=["GET"]),
        Route("/v1/messages/{id}", messages.act_on, methods=["DELETE"]),
        Route("/v1/messages/{id}/{action}", messages.act_on, methods=["POST"]),
        Route("/v1/stats", messages.stats, methods=["GET"]),
        Route("/v1/events", list_events, methods=["GET"]),
        Route("/v1/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
        Route("/v1/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/v1/suppressions", suppressroutes.list_all, methods=["GET"]),
        Route("/v1/suppressions/{address}", suppressroutes.get, methods=["GET"]),
        Route("/v1/suppressions/{address}", suppressroutes.add, methods=["PUT"]),
        Route("/v1/suppressions/{address}", suppressroutes.remove, methods=["DELETE"]),
    ]


def build_app(ctx: ApiContext) -> Guard:
    table = routes()
    app = Starlette(
        routes=table,
        exception_handlers={Problem: _problem, HTTPException: _http_error, Exception: _crash},
    )
    app.state.ctx = ctx

    def limits() -> tuple[int, float]:
        api = ctx.config().api
        return api.max_concurrent_requests, api.request_timeout_s

    observe = None if ctx.metrics is None else ctx.metrics.request
    return Guard(app, limits, observe, budget=lambda: ctx.config().api.memory_budget_bytes)
