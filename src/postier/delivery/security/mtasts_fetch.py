"""MTA-STS policy fetching (RFC 8461 §3.3): one HTTPS GET, verified, bounded, never redirected.

Theory of operation. ``HttpsPolicyFetcher.fetch(domain)`` resolves ``mta-sts.DOMAIN`` through
Postier's own ``Resolver`` (never the system's, so tests and split-horizon setups see the same DNS
as delivery), connects to each address in turn on port 443, and speaks HTTP/1.1 itself: the
certificate must chain to a trusted root (``ca_file``, else the system store) and name
``mta-sts.DOMAIN`` (§3.3: "MUST be valid for the mta-sts host name"). Only ``200`` counts; a redirect
is not followed (§3.3); the whole exchange is bounded by ``timeout_s`` and the body by
``max_bytes`` (64 KiB). It never raises for what the network or the server did: the answer is the
policy text or a ``Broken`` with why. ``PolicyFetcher`` is the protocol (tests may inject another).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

from postier.delivery.security.mtasts import MAX_POLICY_BYTES, Broken, policy_url
from postier.dns import DnsError, Resolver

__all__ = ["HttpsPolicyFetcher", "PolicyFetcher", "parse_http_response"]

_HEAD_LIMIT = 16 * 1024


class PolicyFetcher(Protocol):
    async def fetch(self, domain: str) -> str | Broken:
        """The policy text of ``domain``, or why it could not be had."""
        ...


class HttpsPolicyFetcher:
    """See the module docstring. ``port`` is 443 but for tests that cannot bind it."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        ca_file: str = "",
        timeout_s: float = 10.0,
        max_bytes: int = MAX_POLICY_BYTES,
        port: int = 443,
    ) -> None:
        self._resolver = resolver
        self._context = ssl.create_default_context(cafile=ca_file or None)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._port = port

    async def fetch(self, domain: str) -> str | Broken:
        host, path = policy_url(domain)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._fetch(host, path)
        except TimeoutError:
            return Broken(f"fetching https://{host}{path} timed out after {self._timeout_s:g} s")

    async def _fetch(self, host: str, path: str) -> str | Broken:
        try:
            addresses = await self._resolver.addresses(host)
        except DnsError as exc:
            return Broken(f"cannot resolve {host}: {exc.describe}")
        last = Broken(f"{host} has no address")
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address, self._port, ssl=self._context, server_hostname=host
                )
            except ssl.SSLCertVerificationError as exc:
                return Broken(f"the certificate of {host} is not valid: {exc.verify_message}")
            except (OSError, ssl.SSLError) as exc:
                last = Broken(f"cannot connect to {host} [{address}]: {exc.strerror or type(exc).__name__}")
                continue
            try:
                return await self._exchange(reader, writer, host, path)
            finally:
                writer.close()
        return last

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
    ) -> str | Broken:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Postier\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        limit = self._max_bytes + _HEAD_LIMIT
        data = bytearray()
        try:
            while len(data) <= limit:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
        except (OSError, ssl.SSLError) as exc:
            return Broken(f"reading from {host} failed: {type(exc).__name__}")
        if len(data) > limit:
            return Broken(f"the policy of {host} is larger than {self._max_bytes} octets")
        return parse_http_response(bytes(data), self._max_bytes)


def parse_http_response(data: bytes, max_bytes: int = MAX_POLICY_BYTES) -> str | Broken:
    """The body of a complete HTTP/1.x response (read to EOF) when it is a 200 with a text/plain
    body of at most ``max_bytes``; chunked bodies are decoded."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return Broken("the HTTP response has no header end")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return Broken("not an HTTP/1.x response")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    status = int(parts[1])
    if 300 <= status < 400:
        return Broken(f"HTTP {status} redirect to {headers.get('location', '?')[:100]} not followed")
    if status != 200:
        return Broken(f"HTTP status {status}")
    media = headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if media != "text/plain":
        return Broken(f"the policy is served as {media[:60]}, not text/plain")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        decoded = _dechunk(body)
        if decoded is None:
            return Broken("bad chunked encoding")
        body = decoded
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        if len(body) < length:
            return Broken("the response ended before its Content-Length")
        body = body[:length]
    if len(body) > max_bytes:
        return Broken(f"the policy is larger than {max_bytes} octets")
    return body.decode("utf-8", "replace")


def _dechunk(body: bytes) -> bytes | None:
    out = bytearray()
    while True:
        size_line, sep, body = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            return None
        if not sep or size < 0:
            return None
        if size == 0:
            return bytes(out)
        if len(body) < size + 2:
            return None
        out += body[:size]
        body = body[size + 2 :]
