"""The DKIM signer (RFC 6376 §5, RFC 8463): message bytes in, ``DKIM-Signature`` fields out.

Theory of operation. ``DkimSigner`` is immutable: the keys that may sign, per domain, as the key
store and the DNS checks decided (``table.py``); a reload or a DNS check that changes the answer
builds a new one and swaps the reference, so a session signs with one consistent set.

For one message, ``sign(message, domain)``:

1. splits header and body once and hashes the relaxed body once (``bh=``), for every key;
2. picks the signed fields: those of ``SIGNED`` that are present, each instance once, bottom-up
   (§5.4.2), and the ``OVERSIGNED`` names once more than present (§8.15: a field added later,
   a second From say, then breaks the signature);
3. per key (an Ed25519 and an RSA key give two signatures, §4.2), builds the field with ``b=`` empty,
   hashes the relaxed signed fields and that field (§3.7), and signs: RSA PKCS#1 v1.5 over SHA-256,
   Ed25519 over the SHA-256 digest (RFC 8463 §3).

The returned fields are prepended by the caller. ``t=`` comes from the injected clock; ``x=`` is
``t + expire_s`` when ``expire_s`` > 0. ``DKIM-Signature`` and trace fields are never signed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from postier.mailauth.dkim.canon import header_fields, relaxed_body, relaxed_header, split_message
from postier.mailauth.dkim.keys import PrivateKey, algorithm_of

__all__ = ["OVERSIGNED", "SIGNED", "DkimSigner", "SigningKey", "sign_message"]

SIGNED: tuple[bytes, ...] = (
    b"from", b"reply-to", b"subject", b"date", b"to", b"cc", b"message-id", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding", b"sender",
    b"resent-date", b"resent-from", b"resent-to", b"resent-cc", b"list-id", b"list-help",
    b"list-unsubscribe", b"list-unsubscribe-post", b"list-subscribe", b"list-post", b"list-owner",
    b"list-archive",
)  # fmt: skip
"""RFC 6376 §5.4.1's recommended fields, with Message-ID, MIME fields, Sender and RFC 8058's
List-Unsubscribe-Post."""

OVERSIGNED = frozenset(
    {
        b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"mime-version",
        b"content-type", b"list-unsubscribe", b"list-unsubscribe-post",
    }
)  # fmt: skip
"""Listed once more than present, so that none can be added after signing."""

_SIGNED_SET = frozenset(SIGNED)
_LINE = 76  # fold the field before this many characters (RFC 5322 §2.1.1 asks for at most 78)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key that may sign for ``domain`` (A-label, lowercase) under ``selector``."""

    domain: str
    selector: str
    key: PrivateKey = field(repr=False)

    @property
    def algorithm(self) -> str:
        return f"{algorithm_of(self.key)}-sha256"


def _signed_fields(header: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """The ``h=`` names in order and the relaxed, CRLF-ended fields they select, concatenated."""
    found: dict[bytes, list[bytes]] = {}
    for name, raw in header_fields(header):
        if name in _SIGNED_SET:
            found.setdefault(name, []).append(raw)
    names: list[bytes] = []
    canonical: list[bytes] = []
    for name in SIGNED:
        for raw in reversed(found.get(name, ())):  # §5.4.2: the last instance is taken first
            names.append(name)
            canonical.append(relaxed_header(raw) + b"\r\n")
        if name in OVERSIGNED:
            names.append(name)
    return tuple(names), b"".join(canonical)


def _fold(tokens: Iterable[tuple[str, str]]) -> str:
    """Join (glue, token) pairs into one field, starting a continuation line (CRLF SP) whenever
    the current line would pass ``_LINE``; the glue is dropped at a fold."""
    out, line = "DKIM-Signature:", len("DKIM-Signature:")
    for glue, token in tokens:
        if line + len(glue) + len(token) > _LINE:
            out += "\r\n " + token
            line = 1 + len(token)
        else:
            out += glue + token
            line += len(glue) + len(token)
    return out


@functools.lru_cache(maxsize=512)
def _prefix(algorithm: str, domain: str, selector: str, names: tuple[bytes, ...]) -> str:
    """The folded field up to ``h=`` included: the same for every message with the same signed
    fields, so it is built once (the cache is bounded; a key's selector and domain are in the key)."""
    tags = ["v=1;", f"a={algorithm};", "c=relaxed/relaxed;", f"d={domain};", f"s={selector};"]
    tokens = [(" ", tag) for tag in tags]
    h = [n.decode("ascii") + ":" for n in names]
    h[-1] = h[-1][:-1] + ";"
    tokens += [(" ", "h=" + h[0])] + [("", n) for n in h[1:]]
    return _fold(tokens)


def _unsigned_field(key: SigningKey, names: tuple[bytes, ...], bh: str, t: int, x: int | None) -> str:
    """The field with ``b=`` empty: the cached prefix, then t=, x=, and bh= and b= on lines of their own."""
    times = f" t={t};" + (f" x={x};" if x is not None else "")
    return f"{_prefix(key.algorithm, key.domain, key.selector, names)}\r\n{times}\r\n bh={bh};\r\n b="


def _canonical(unsigned: str) -> bytes:
    """``relaxed_header`` of a field we folded ourselves: our folds are CRLF SP and our tags hold no
    other whitespace, so unfolding is all it takes (equal to ``relaxed_header``; tested)."""
    return b"dkim-signature:" + unsigned[len("DKIM-Signature:") :].replace("\r\n", "").strip().encode("ascii")


def _signature(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(hashlib.sha256(data).digest())  # RFC 8463 §3: PureEdDSA over the digest
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _fold_b(value: str, start: int) -> str:
    """``b=`` is the last tag: its base64 is cut into lines (FWS is allowed in it, §3.5)."""
    first = max(_LINE - start, 8)
    parts = [value[:first]] + [value[i : i + _LINE - 1] for i in range(first, len(value), _LINE - 1)]
    return "\r\n ".join(p for p in parts if p)


def sign_message(
    message: bytes,
    keys: Iterable[SigningKey],
    *,
    now: float,
    expire_s: float = 0.0,
    body_hash: bytes | None = None,
) -> bytes:
    """The ``DKIM-Signature`` fields for ``message`` (CRLF line ends), one per key, each ending in
    CRLF, to prepend. Empty when ``keys`` is. With ``body_hash`` (the SHA-256 of the relaxed body,
    ``canon.RelaxedBodyHash``: a large body hashed from its spool file), ``message`` need only be
    the header section; its body is not read."""
    keys = tuple(keys)
    if not keys:
        return b""
    header, body = split_message(message)
    names, signed = _signed_fields(header)  # names: a tuple, the cache key of the field's prefix
    digest = hashlib.sha256(relaxed_body(body)).digest() if body_hash is None else body_hash
    bh = base64.b64encode(digest).decode("ascii")
    t = int(now)
    x = t + int(expire_s) if expire_s > 0 else None
    out = []
    for key in keys:
        unsigned = _unsigned_field(key, names, bh, t, x)
        data = signed + _canonical(unsigned)
        b = base64.b64encode(_signature(key.key, data)).decode("ascii")
        start = len(unsigned) - unsigned.rfind("\n")
        out.append(unsigned + _fold_b(b, start) + "\r\n")
    return "".join(out).encode("ascii")


class DkimSigner:
    """The keys that sign now, per domain (A-label, lowercase): at most one per algorithm, Ed25519
    first. ``keyed`` holds every domain that has keys at all, usable or not (an unsigned message
    from one of them is logged). Immutable; swapped whole."""

    __slots__ = ("_clock", "_table", "expire_s", "keyed", "sign_by")

    def __init__(
        self,
        table: Mapping[str, tuple[SigningKey, ...]] | None = None,
        *,
        keyed: Iterable[str] = (),
        expire_s: float = 0.0,
        sign_by: str = "from",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sign_by = sign_by  # [dkim] sign_by: "from" or "sender"
        self._table = {d: keys for d, keys in (table or {}).items() if keys}
        self.keyed = frozenset(keyed) | frozenset(self._table)
        self.expire_s = expire_s
        self._clock = clock

    @property
    def is_empty(self) -> bool:
        """No domain has a key at all: nothing to sign, nothing to log."""
        return not self.keyed

    def has_rsa(self, domain: str) -> bool:
        """An RSA key signs for ``domain``: hundreds of µs (worth a thread), not tens as Ed25519."""
        return any(k.algorithm == "rsa-sha256" for k in self._table.get(domain, ()))

    def keys_for(self, domain: str) -> tuple[SigningKey, ...]:
        return self._table.get(domain, ())

    def sign(self, message: bytes, domain: str, *, body_hash: bytes | None = None) -> bytes:
        """The signature fields for ``message`` with ``domain``'s keys (empty bytes: none apply);
        ``body_hash``: see ``sign_message``."""
        keys = self._table.get(domain)
        if not keys:
            return b""
        return sign_message(message, keys, now=self._clock(), expire_s=self.expire_s, body_hash=body_hash)
