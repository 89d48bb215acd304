"""Tables behind ``postier explain``: what each enhanced status code means — the IANA "SMTP Enhanced
Status Codes" registry (RFC 5248), keyed by (subject, detail). Each entry is ``(meaning, what to
check, defining source)``, as in ``explain_data``.
"""

from __future__ import annotations

from postier.mail.explain_data import Row

__all__ = ["ENHANCED", "ENHANCED_SUBJECT"]

_3463 = "RFC 3463 §3."
ENHANCED_SUBJECT: dict[int, tuple[str, str]] = {
    0: ("other or undefined status", _3463 + "1"),
    1: ("addressing: the sender or recipient address", _3463 + "2"),
    2: ("mailbox: the recipient's mailbox", _3463 + "3"),
    3: ("mail system: the receiving system as a whole", _3463 + "4"),
    4: ("network and routing", _3463 + "5"),
    5: ("mail delivery protocol", _3463 + "6"),
    6: ("message content or media", _3463 + "7"),
    7: ("security or policy", _3463 + "8"),
}

_ADDR, _MBOX, _SYS, _NET, _PROTO, _MEDIA, _SEC = (_3463 + str(n) for n in range(2, 9))
_IANA = "IANA SMTP Enhanced Status Codes registry"

ENHANCED: dict[tuple[int, int], Row] = {
    (0, 0): ("Other or undefined status", "The reply text: the code says nothing more", _3463 + "1"),
    (1, 0): ("Other address status", "The sender and recipient addresses", _ADDR),
    (1, 1): ("Bad destination mailbox address: no such user", "The recipient's spelling (local part)", _ADDR),
    (1, 2): (
        "Bad destination system address: the domain does not exist or takes no mail",
        "The recipient domain's spelling and DNS (MX, A)",
        _ADDR,
    ),
    (1, 3): ("Bad destination mailbox address syntax", "The recipient address syntax", _ADDR),
    (1, 4): ("Destination mailbox address ambiguous", "Use the full, exact recipient address", _ADDR),
    (1, 5): ("Destination address valid", "Nothing", _ADDR),
    (1, 6): (
        "Destination mailbox has moved, no forwarding address",
        "Ask the recipient for the new address",
        _ADDR,
    ),
    (1, 7): ("Bad sender's mailbox address syntax", "The sender address (MAIL FROM) syntax", _ADDR),
    (1, 8): (
        "Bad sender's system address: the sender's domain does not exist or takes no mail",
        "The sender domain's DNS: receivers check that bounces could reach it",
        _ADDR,
    ),
    (1, 9): (
        "Message relayed to a non-compliant mailer: delivered, but no more status will come",
        "Nothing",
        "RFC 3886",
    ),
    (1, 10): (
        "Recipient address has a null MX: the domain accepts no mail",
        'The recipient domain: it publishes "MX 0 ."',
        "RFC 7505",
    ),
    (2, 0): ("Other or undefined mailbox status", "The reply text", _MBOX),
    (2, 1): (
        "Mailbox disabled, not accepting messages",
        "Whether the recipient's account still exists",
        _MBOX,
    ),
    (2, 2): ("Mailbox full", "The recipient's quota: they must make room", _MBOX),
    (2, 3): ("Message length exceeds an administrative limit of the mailbox", "The message size", _MBOX),
    (2, 4): ("Mailing list expansion problem", "The list's member addresses and configuration", _MBOX),
    (3, 0): ("Other or undefined mail system status", "The receiving server's logs", _SYS),
    (3, 1): ("Mail system full: out of storage", "Disk space on the receiving server", _SYS),
    (3, 2): (
        "System not accepting network messages (shutting down, maintenance)",
        "Nothing: wait and retry",
        _SYS,
    ),
    (3, 3): ("System not capable of the selected features", "The features the message needs", _SYS),
    (3, 4): ("Message too big for the system", "The message size against the advertised SIZE", _SYS),
    (3, 5): ("System incorrectly configured", "The receiving server's configuration", _SYS),
    (3, 6): ("Requested priority was changed", "Nothing", "RFC 6710"),
    (4, 0): ("Other or undefined network or routing status", "Network path and DNS", _NET),
    (4, 1): ("No answer from host", "That the server is up and reachable on port 25", _NET),
    (4, 2): (
        "Bad connection: it broke or timed out during the transaction",
        "Network stability and timeouts",
        _NET,
    ),
    (4, 3): ("Directory server failure (usually DNS)", "The resolver: SERVFAIL or timeouts", _NET),
    (4, 4): (
        "Unable to route: no usable MX or address for the domain",
        "The domain's MX and A/AAAA records",
        _NET,
    ),
    (4, 5): ("Mail system congestion", "Nothing: it is retried", _NET),
    (4, 6): ("Routing loop detected", "Forwarding and MX settings: mail comes back to itself", _NET),
    (4, 7): (
        "Delivery time expired: the message stayed queued too long",
        "Why the earlier attempts failed (the deferred lines before it)",
        _NET,
    ),
    (5, 0): ("Other or undefined protocol status", "The SMTP exchange", _PROTO),
    (5, 1): ("Invalid command (unknown, or in the wrong order)", "The client's commands", _PROTO),
    (5, 2): ("Syntax error", "The command exactly as sent; bare CR or LF line endings", _PROTO),
    (5, 3): (
        "Too many recipients",
        "The recipient count: the rest are retried in another transaction",
        _PROTO,
    ),
    (5, 4): ("Invalid command arguments", "The parameters and AUTH mechanism sent", _PROTO),
    (5, 5): ("Wrong protocol version", "Client and server software", _PROTO),
    (5, 6): ("Authentication exchange line is too long", "The AUTH data sent (a huge token?)", "RFC 4954 §6"),
    (6, 0): ("Other or undefined media error", "The message's format", _MEDIA),
    (6, 1): ("Media not supported", "The message's MIME types and encodings", _MEDIA),
    (6, 2): ("Conversion required and prohibited", "The 8BITMIME/encoding of the message", _MEDIA),
    (6, 3): ("Conversion required but not supported", "The message encoding", _MEDIA),
    (6, 4): ("Conversion with loss performed", "Nothing: delivered, but altered", _MEDIA),
    (6, 5): ("Conversion failed", "The message encoding", _MEDIA),
    (6, 6): (
        "Message content not available (BURL could not fetch it)",
        "The URL and IMAP server used",
        "RFC 4468",
    ),
    (6, 7): (
        "Non-ASCII addresses not permitted for that sender or recipient",
        "Whether the next hop supports SMTPUTF8",
        "RFC 6531",
    ),
    (6, 8): (
        "A UTF-8 reply is required, but the client does not permit it",
        "Client SMTPUTF8 support",
        "RFC 6531",
    ),
    (6, 9): (
        "UTF-8 header message cannot be transferred to one or more recipients",
        "Whether the recipient's server supports SMTPUTF8",
        "RFC 6531",
    ),
    (7, 0): ("Other or undefined security or policy status", "The reply text: a policy refused it", _SEC),
    (7, 1): (
        "Delivery not authorized, message refused (relay denied, blocklist, policy)",
        "Relay permission (trusted network or AUTH), blocklists, the recipient's policy",
        _SEC,
    ),
    (7, 2): ("Mailing list expansion prohibited", "Whether the sender may post to the list", _SEC),
    (7, 3): ("Security conversion required but not possible", "The message's security requirements", _SEC),
    (7, 4): ("Security features not supported", "The security features requested", _SEC),
    (7, 5): ("Cryptographic failure", "Keys and certificates involved", _SEC),
    (7, 6): ("Cryptographic algorithm not supported", "The algorithms used", _SEC),
    (7, 7): ("Message integrity failure", "Whether the message was altered in transit", _SEC),
    (7, 8): ("Authentication credentials invalid", "Username and password", "RFC 4954 §6"),
    (7, 9): ("Authentication mechanism is too weak", "Use a stronger mechanism", "RFC 4954 §6"),
    (7, 10): ("Encryption needed", "Use TLS", "RFC 5248"),
    (7, 11): (
        "Encryption required for the requested authentication mechanism",
        "Use STARTTLS before AUTH",
        "RFC 4954 §6",
    ),
    (7, 12): (
        "A password transition is needed",
        "Log in once with a plain mechanism over TLS",
        "RFC 4954 §6",
    ),
    (7, 13): ("User account disabled", "The account's state", "RFC 5248"),
    (7, 14): ("Trust relationship required", "The agreement between the two systems", "RFC 5248"),
    (7, 15): ("Priority level is too low", "The requested MT-PRIORITY", "RFC 6710"),
    (7, 16): ("Message is too big for the specified priority", "Size and priority", "RFC 6710"),
    (7, 17): (
        "Mailbox owner has changed (RRVS)",
        "Whether the recipient is still the intended person",
        "RFC 7293",
    ),
    (7, 18): ("Domain owner has changed (RRVS)", "Whether the domain is still the intended one", "RFC 7293"),
    (7, 19): (
        "RRVS test cannot be completed",
        "Nothing: the receiver cannot check ownership age",
        "RFC 7293",
    ),
    (7, 20): ("No passing DKIM signature found", "The sending domain's DKIM signing", "RFC 7372 §3.1"),
    (7, 21): (
        "No acceptable DKIM signature found",
        "DKIM keys and algorithms of the sender",
        "RFC 7372 §3.1",
    ),
    (7, 22): (
        "No valid author-matched DKIM signature found",
        "That DKIM signs with the From: domain",
        "RFC 7372 §3.1",
    ),
    (7, 23): (
        "SPF validation failed",
        "The sending domain's SPF record lists this server's IP",
        "RFC 7372 §3.2",
    ),
    (7, 24): ("SPF validation error", "The SPF record's syntax and DNS lookups", "RFC 7372 §3.2"),
    (7, 25): (
        "Reverse DNS validation failed",
        "The PTR record of the sending IP and its matching A/AAAA",
        "RFC 7372 §3.3",
    ),
    (7, 26): (
        "Multiple authentication checks failed",
        "SPF, DKIM and DMARC of the sending domain",
        "RFC 7372 §3.4",
    ),
    (7, 27): (
        "Sender address has a null MX: replies could never be delivered",
        'The sender domain: it publishes "MX 0 ."',
        "RFC 7505",
    ),
    (7, 28): (
        "Mail flood detected: this looks like part of a flood of similar messages",
        "The sending volume and rate",
        _IANA,
    ),
    (7, 29): ("ARC validation failure", "The ARC headers added by intermediaries", "RFC 8617"),
    (7, 30): (
        "REQUIRETLS support required, but the next hop lacks it",
        "TLS support along the path",
        "RFC 8689",
    ),
}
