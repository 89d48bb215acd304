"""DKIM signing at the end of DATA, the last step before the enqueue (docs/dkim.md).

What is signed: a message from an authenticated client or a trusted network whose signing domain
(the From: domain, or the envelope sender's per ``[dkim] sign_by``) has a key whose DNS record
matches. Mail relayed for strangers is never signed. A message from a domain that has keys but is
not signed is said so on the ``queued`` line (``dkim=unsigned dkim_reason=…``); a signed one says
``dkim=DOMAIN``. The signer is read once from the session's ``Live`` (an immutable object swapped
whole by the key checks and reloads), and when no domain has keys nothing at all is parsed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from postier.mail.address import Address
from postier.mailauth.dkim import DkimSigner, signing_domain
from postier.mailauth.dkim.canon import RelaxedBodyHash
from postier.policy import Client
from postier.spool import MessageBody

__all__ = ["UNSIGNED", "Signed", "dkim_sign"]

_THREAD_BYTES = 64 * 1024  # sign larger messages off the event loop (hashing, canonicalising)


def sign_spooled(signer: DkimSigner, content: MessageBody, domain: str) -> bytes:
    """Sign a spooled message without reading it into memory: the header section, and the relaxed
    body hashed piece by piece (blocking reads: run it in a thread)."""
    header, start = content.split()
    body_hash = RelaxedBodyHash()
    for piece in content.chunks(start=start):
        body_hash.update(piece)
    return signer.sign(header + b"\r\n\r\n", domain, body_hash=body_hash.digest())


@dataclass(frozen=True, slots=True)
class Signed:
    """The fields to prepend (may be empty) and what the ``queued`` line says of DKIM."""

    fields: bytes = b""
    result: str | None = None
    reason: str | None = None


UNSIGNED = Signed()


async def dkim_sign(
    signer: DkimSigner, content: bytes | MessageBody, sender: Address | None, client: Client
) -> Signed:
    """The signatures for ``content`` (the message as it will be queued, less the trace header)."""
    header = content if isinstance(content, bytes) else content.header_section() + b"\r\n\r\n"
    domain = signing_domain(header, sender, signer.sign_by)
    if domain is None or domain not in signer.keyed:
        return UNSIGNED
    if not client.is_ours:
        return Signed(result="unsigned", reason="not from an authenticated or trusted client")
    if not signer.keys_for(domain):
        return Signed(result="unsigned", reason="no key of the domain can sign (see postier dkim list)")
    if isinstance(content, MessageBody):  # a large message: its body hashed from the spool file
        fields = await asyncio.to_thread(sign_spooled, signer, content, domain)
    elif signer.has_rsa(domain) or len(content) > _THREAD_BYTES:
        # Off the event loop: the RSA signature (OpenSSL releases the GIL) and the hashing of a large
        # body would stall every other session for hundreds of µs; Ed25519 on a small message is
        # quicker than the hand-off to a thread.
        fields = await asyncio.to_thread(signer.sign, content, domain)
    else:
        fields = signer.sign(content, domain)
    return Signed(fields, domain)
