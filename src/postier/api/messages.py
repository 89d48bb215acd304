"""``/v1/messages`` and ``/v1/stats``: send, look at and act on the queue over HTTP.

A message sent here takes the road of one received over SMTP from an authenticated client: the same
``Received:`` trace (``with HTTP``/``HTTPS``, the key's name as the client), DKIM signing with the
keys ``[dkim]`` signs with, the same ``queued`` mail-log line (``proto=HTTP user=KEY``), and the same
queue, whose ``enqueue`` returns only once the message is durable — so ``202`` with the queue id means
what SMTP's ``250 … queued as ID`` means. The other operations are the ones ``postier queue`` runs
(``control/queue_ops.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from postier.api.compose import ComposeError, SendRequest, compose
from postier.api.context import ApiContext
from postier.api.problems import Problem, authorize, json_response, read_body
from postier.api.unsubscribe import headers_for
from postier.control import queue_ops
from postier.control.queue_ops import Action
from postier.mail.envelope import ClientInfo, Envelope
from postier.mail.errors import QueueError, UnknownMessageError
from postier.mail.explain import explain
from postier.mail.replies import S
from postier.mailauth.dkim import signing_domain
from postier.observe import mail_event
from postier.queue import MessageStatus, QueueFilter
from postier.server.received import received_header

__all__ = ["act_on", "get_message", "list_messages", "message_json", "send", "stats"]


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def send(request: Request) -> Response:
    ctx = _ctx(request)
    key = authorize(request, ctx.keys, "send")
    api = ctx.config().api
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Problem(415, "unsupported-media-type", "send application/json")
    data = await read_body(request, api.max_body_bytes)
    try:
        req = msgspec.json.decode(data, type=SendRequest)
    except msgspec.ValidationError as exc:
        raise Problem(422, "invalid-request", str(exc)) from None
    except msgspec.DecodeError:
        raise Problem(400, "bad-json", "the body is not JSON") from None
    config = ctx.config()
    try:
        composed = await asyncio.to_thread(
            compose, req, hostname=config.server.hostname, max_recipients=api.max_recipients
        )
    except ComposeError as exc:
        raise Problem(422, "invalid-message", exc.detail, field=exc.field) from None
    if len(composed.message) > config.server.max_message_bytes:
        raise Problem(
            413, "too-large", f"the message is larger than {config.server.max_message_bytes} octets"
        )
    client_ip = request.client.host if request.client else ""
    tls = request.url.scheme == "https"
    envelope = composed.envelope
    proto = "HTTPS" if tls else "HTTP"
    info = ClientInfo(ip=client_ip, helo="api", protocol=proto, auth_user=key.name, listener="api")
    envelope = dataclasses.replace(envelope, client=info)
    envelope, dropped = _unsuppressed(ctx, envelope, key.name)
    message = composed.message
    if req.list_unsubscribe:
        message = _with_unsubscribe(ctx, envelope, message)
    if not envelope.recipients:
        return json_response({"id": None, "recipients": 0, "suppressed": dropped}, 202)
    queue_id = ctx.sink.new_id()
    signed, dkim = await _dkim(ctx, message, envelope.sender)
    trace = received_header(
        helo=f"api key {key.name}",
        client_ip=client_ip or "127.0.0.1",
        hostname=config.server.hostname,
        protocol=proto,
        queue_id=queue_id,
        tls=None,
        recipients=tuple(r.address for r in envelope.recipients),
        now=datetime.now(UTC),
    )
    content = trace + signed + message
    try:
        queue_id = await ctx.sink.enqueue(envelope, content, queue_id=queue_id)
    except QueueError:
        raise Problem(503, "queue-unavailable", "the message could not be queued; try again") from None
    mail_event(
        "queued",
        id=queue_id,
        from_=f"<{envelope.sender}>",
        size=len(content),
        nrcpt=len(envelope.recipients),
        proto=proto,
        user=key.name,
        dkim=dkim,
    )
    answer: dict[str, Any] = {"id": queue_id, "recipients": len(envelope.recipients)}
    if dropped:
        answer["suppressed"] = dropped
    return json_response(answer, 202)


def _with_unsubscribe(ctx: ApiContext, envelope: Envelope, message: bytes) -> bytes:
    """The message with RFC 8058 List-Unsubscribe fields for its one recipient (before DKIM)."""
    if ctx.unsubscribe is None:
        raise Problem(
            422, "invalid-message", "list_unsubscribe needs [suppression] enabled", field="list_unsubscribe"
        )
    if len(envelope.recipients) != 1:
        raise Problem(
            422, "invalid-message", "list_unsubscribe needs exactly one recipient", field="list_unsubscribe"
        )
    fields = headers_for(ctx.unsubscribe, ctx.base_url, str(envelope.recipients[0].address))
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in fields.items()) + message


def _unsuppressed(ctx: ApiContext, envelope: Envelope, user: str) -> tuple[Envelope, list[str]]:
    """The envelope without its suppressed recipients, and those; a Problem (422) when the action is
    "refuse" and any recipient is suppressed. Each one is a ``reject`` line (and event)."""
    if ctx.suppressions is None:
        return envelope, []
    found = [(r, ctx.suppressions.find(r.address)) for r in envelope.recipients]
    suppressed = [str(r.address) for r, s in found if s is not None]
    if not suppressed:
        return envelope, []
    for address in suppressed:
        mail_event(
            "reject",
            stage="rcpt",
            from_=f"<{envelope.sender}>",
            rcpt=f"<{address}>",
            user=user,
            reply=str(S.SUPPRESSED),
            check="suppression",
            reason="suppressed",
        )
    if ctx.config().suppression.action == "refuse":
        raise Problem(422, "suppressed", "recipients are on the suppression list", suppressed=suppressed)
    kept = tuple(r for r, s in found if s is None)
    return dataclasses.replace(envelope, recipients=kept), suppressed


async def _dkim(ctx: ApiContext, message: bytes, sender: Any) -> tuple[bytes, str | None]:
    signer = ctx.signer()
    if signer.is_empty:
        return b"", None
    domain = signing_domain(message, sender, signer.sign_by)
    if domain is None or domain not in signer.keyed:
        return b"", None
    if not signer.keys_for(domain):
        return b"", "unsigned"
    fields = await asyncio.to_thread(signer.sign, message, domain)
    return fields, domain


def _explained(reply: str | None) -> dict[str, object] | None:
    if not reply:
        return None
    try:
        return explain(reply).as_dict()
    except ValueError:
        return None


async def message_json(ctx: ApiContext, text_id: str) -> dict[str, Any]:
    """A message as GET /v1/messages/{id} answers it (UnknownMessageError when there is none)."""
    shown = await queue_ops.show(ctx.queue, text_id, body=False)
    data = queue_ops.record_to_json(shown.record)
    for rcpt in data["recipients"]:
        rcpt["last_reply_explained"] = _explained(rcpt["last_reply"])
    data["header"] = None if shown.body is None else shown.body.decode("utf-8", "replace")
    if ctx.events is not None:  # the timeline: every attempt, with its reply explained
        page = await asyncio.to_thread(ctx.events.page, 0, 1000, (), shown.record.id)
        for event in page.items:
            if event.get("reply"):
                event["reply_explained"] = _explained(event["reply"])
        data["events"] = page.items
    return data


async def get_message(request: Request) -> Response:
    ctx = _ctx(request)
    authorize(request, ctx.keys, "read")
    try:
        data = await message_json(ctx, request.path_params["id"])
    except UnknownMessageError:
        raise Problem(404, "not-found", "no such message in the queue") from None
    return json_response(data)


def _filter(request: Request) -> QueueFilter:
    q = request.query_params
    status = None
    if q.get("status"):
        try:
            status = MessageStatus(q["status"])
        except ValueError:
            raise Problem(400, "bad-request", "status is one of active, held, done") from None
    since = None
    if q.get("since"):
        try:
            since = datetime.fromisoformat(q["since"])
        except ValueError:
            raise Problem(400, "bad-request", "since is an ISO 8601 date-time") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    domain = q.get("domain") or None
    return QueueFilter(status=status, domain=domain.lower() if domain else None, arrived_after=since)


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not 0 <= int(text) <= high:
        raise Problem(400, "bad-request", f"{name} is a number from 0 to {high}")
    return int(text)


async def list_messages(request: Request) -> Response:
    """Oldest first; ``limit`` (at most ``api.page_size``) from ``offset``; ``next`` is the next
    page's ``offset``, or null on the last page."""
    ctx = _ctx(request)
    authorize(request, ctx.keys, "read")
    page = ctx.config().api.page_size
    where = _filter(request)
    limit = _int_param(request, "limit", page, page)
    offset = _int_param(request, "offset", 0, 10_000_000)
    found = await ctx.queue.list_messages(where, limit=offset + limit + 1)
    items = found[offset : offset + limit]
    more = len(found) > offset + limit
    return json_response(
        {
            "items": [queue_ops.summary_to_json(s) for s in items],
            "offset": offset,
            "limit": limit,
            "next": offset + limit if more else None,
        }
    )


async def act_on(request: Request) -> Response:
    """POST /v1/messages/{id}/hold|release|retry, DELETE /v1/messages/{id}."""
    ctx = _ctx(request)
    authorize(request, ctx.keys, "admin")
    if request.method == "DELETE":
        action = Action.DELETE
    elif request.path_params["action"] in ("hold", "release", "retry"):
        action = Action(request.path_params["action"])
    else:
        raise Problem(404, "not-found", "the actions are hold, release and retry")
    try:
        queue_id = queue_ops.check_id(request.path_params["id"])
        await ctx.queue.get(queue_id)
        changed = await queue_ops.act(ctx.queue, action, queue_id)
    except UnknownMessageError:
        raise Problem(404, "not-found", "no such message in the queue") from None
    if changed and action is not Action.HOLD:
        ctx.wake()
    return json_response({"id": queue_id, "action": action.value, "changed": changed})


async def stats(request: Request) -> Response:
    ctx = _ctx(request)
    authorize(request, ctx.keys, "read")
    return json_response(queue_ops.stats_to_json(await ctx.queue.stats()))
