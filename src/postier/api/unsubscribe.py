"""RFC 8058 one-click unsubscribe for messages sent through the API (``"list_unsubscribe": true``).

Theory of operation. Such a message has one recipient (a link names one address) and gets
``List-Unsubscribe: <URL>`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``, before it is
DKIM-signed (RFC 8058 §4 wants the signature to cover both). URL is ``api.public_url`` (or the API's
own address) + ``/v1/unsubscribe/TOKEN``, TOKEN the address (base64url) and an HMAC-SHA256 of it keyed
with ``data_dir/unsubscribe.key`` (made once, 32 random octets, 0600): nobody can unsubscribe an
address they were not sent. A POST there (no API key: the mail provider posts it) adds the address
to the suppression list (reason ``unsubscribe``); a GET only shows a page with the button, as
RFC 8058 §3.2 forbids unsubscribing on GET (link scanners fetch URLs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from postier.api.problems import Problem, read_body
from postier.observe import mail_event
from postier.safeio import atomic_write

if TYPE_CHECKING:
    from postier.api.context import ApiContext

__all__ = ["UnsubscribeKey", "headers_for", "unsubscribe_page", "unsubscribe_post"]


class UnsubscribeKey:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None

    def _load(self) -> bytes:
        if self._key is None:
            try:
                self._key = self.path.read_bytes()
            except FileNotFoundError:
                key = secrets.token_bytes(32)
                atomic_write(self.path, key)
                self._key = key
        return self._key

    def token(self, address: str) -> str:
        raw = address.lower().encode()
        mac = hmac.new(self._load(), raw, hashlib.sha256).digest()[:16]
        return _b64(raw) + "." + _b64(mac)

    def address_of(self, token: str) -> str | None:
        encoded, _, mac = token.partition(".")
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        expected = _b64(hmac.new(self._load(), raw, hashlib.sha256).digest()[:16])
        if not hmac.compare_digest(expected, mac):
            return None
        return raw.decode("utf-8", "replace")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def headers_for(key: UnsubscribeKey, base_url: str, address: str) -> dict[str, str]:
    url = f"{base_url.rstrip('/')}/v1/unsubscribe/{key.token(address)}"
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _address(request: Request) -> tuple[ApiContext, str]:
    ctx: ApiContext = request.app.state.ctx
    if ctx.unsubscribe is None or ctx.suppressions is None:
        raise Problem(404, "not-found", "one-click unsubscribe is off")
    address = ctx.unsubscribe.address_of(request.path_params["token"])
    if address is None:
        raise Problem(404, "not-found", "this unsubscribe link is not valid")
    return ctx, address


async def unsubscribe_post(request: Request) -> Response:
    ctx, address = _address(request)
    await read_body(request, 4096)  # "List-Unsubscribe=One-Click" (RFC 8058 §3.1); anything is fine
    assert ctx.suppressions is not None
    if ctx.suppressions.add(address, "unsubscribe", "one-click"):
        mail_event("suppressed", rcpt=f"<{address}>", reason="unsubscribe", source="one-click")
    return HTMLResponse("<!doctype html><title>Unsubscribed</title><p>You are unsubscribed.</p>")


async def unsubscribe_page(request: Request) -> Response:
    _, address = _address(request)
    page = (
        "<!doctype html><title>Unsubscribe</title>"
        f"<p>Stop mail to {html.escape(address)}?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(page)
