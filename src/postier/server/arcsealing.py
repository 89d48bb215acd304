"""ARC sealing at the end of DATA (docs/mailauth.md, ARC): a stranger's message that an alias sends on
to another domain gets our ARC set, so that its next hop can see what we found (its SPF will fail
there: the message now comes from us).

When: ``[mailauth] arc_seal``; the mailauth check ran (the message carries our Authentication-Results);
a recipient after alias expansion is outside the local domains and was not a recipient as received;
and ``server.hostname``'s domain (or a parent) has an RSA DKIM key (RFC 8617 allows rsa-sha256 only).
The seal covers the message as queued, less the trace header. Sealing runs off the event loop (dkimpy
signs in pure Python).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from postier.mail.envelope import Recipient
from postier.mailauth.arcseal import arc_seal
from postier.mailauth.dkim import DkimSigner, host_domain
from postier.policy.relay import RelayPolicy
from postier.spool import MessageBody, as_bytes

__all__ = ["is_forwarded", "seal"]


def is_forwarded(received: Iterable[Recipient], expanded: Iterable[Recipient], relay: RelayPolicy) -> bool:
    """An alias sent the message on to another domain: a final recipient that is not local and was
    not one of the recipients the client gave."""
    given = {r.address for r in received}
    return any(r.address not in given and not relay.is_local(r.address) for r in expanded)


async def seal(signer: DkimSigner, hostname: str, message: bytes | MessageBody) -> bytes:
    """The ARC fields to prepend to ``message``; b"" when no RSA key of the host's domain can seal."""
    domain = host_domain(signer, hostname)
    if domain is None:
        return b""
    keys = [key for key in signer.keys_for(domain) if key.algorithm == "rsa-sha256"]
    if not keys:
        return b""
    return await asyncio.to_thread(lambda: arc_seal(as_bytes(message), keys[0], hostname))
