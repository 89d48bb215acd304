"""Tables behind ``postier explain``: what each SMTP reply code means (enhanced status codes:
``explain_enhanced``).

Each entry is ``(meaning, what to check, defining source)``. A source that does not start with
``RFC`` marks a code that no RFC defines: it is seen in logs and means what the entry says *in
practice*. Basic codes: RFC 5321 §4.2.2–4.2.3, RFC 4954 §4/§6 (AUTH), RFC 7504 (521/556). Enhanced
codes: the IANA "SMTP Enhanced Status Codes" registry (RFC 5248), keyed by (subject, detail).
"""

from __future__ import annotations

__all__ = ["BASIC", "BASIC_CATEGORY", "BASIC_CLASS", "Row"]

Row = tuple[str, str, str]

_5321 = "RFC 5321 §4.2.3"
_4954 = "RFC 4954 §6"
_SEEN = "not in any RFC: seen in logs"

BASIC: dict[int, Row] = {
    # --- Not SMTP replies at all: connection errors some MTAs and tools log as three-digit codes.
    101: (
        "Cannot connect: network unreachable (errno 101 ENETUNREACH, logged as a code by some tools)",
        "Routing and firewall from this host to the server; IPv6 without a route is a usual cause",
        _SEEN,
    ),
    111: (
        "Connection refused (errno 111 ECONNREFUSED): nothing listens on the server's SMTP port",
        "That the server runs and listens on the port, and that no firewall rejects the connection",
        _SEEN,
    ),
    # --- RFC 5321 §4.2.2/4.2.3
    211: ("System status, or system help reply", "Nothing: informational", _5321),
    214: ("Help message for a human reader", "Nothing: informational", _5321),
    220: ("Service ready: the server's greeting (also the go-ahead after STARTTLS)", "Nothing", _5321),
    221: ("Service closing the connection, usually after QUIT", "Nothing", _5321),
    250: (
        "Requested action okay, completed; after the message data it means the server took the mail",
        "Nothing: at end of data the receiver is now responsible for the message",
        _5321,
    ),
    251: ("User not local; the server will forward to another address", "Nothing", _5321),
    252: (
        "Cannot verify the user (VRFY), but will accept the message and try delivery",
        "Nothing: most servers disable VRFY on purpose",
        _5321,
    ),
    354: (
        "Start mail input; end the data with <CRLF>.<CRLF>",
        "Nothing: the client now sends the message",
        _5321,
    ),
    421: (
        "Service not available, closing the connection (shutdown, overload, too many connections)",
        "Server load and connection limits; the reply text usually says which",
        _5321,
    ),
    450: (
        "Mailbox unavailable for now (busy, locked, or refused by a temporary policy such as greylisting)",
        "Greylisting and rate limits on the receiving side; it normally clears on a later try",
        _5321,
    ),
    451: (
        "Action aborted: local error in processing on the server",
        "The receiving server's own logs: a filter, DNS lookup or storage step failed",
        _5321,
    ),
    452: (
        "Insufficient system storage, or too many recipients for this message",
        "Disk space on the receiving server, or the recipient count (the rest are retried later)",
        _5321,
    ),
    455: (
        "Server cannot accommodate the MAIL FROM/RCPT TO parameters now",
        "The ESMTP parameters sent",
        _5321,
    ),
    500: (
        "Syntax error, command unrecognized or line too long",
        "What the client sent; a proxy or "
        "firewall that mangles SMTP (or, under AUTH, a too-long line: RFC 4954 5.5.6)",
        _5321,
    ),
    501: (
        "Syntax error in parameters or arguments (often a malformed address)",
        "The address and parameters exactly as sent: angle brackets, spaces, non-ASCII",
        _5321,
    ),
    502: ("Command not implemented", "Whether the client relies on an extension the server lacks", _5321),
    503: (
        "Bad sequence of commands (e.g. RCPT before MAIL, DATA without recipients, AUTH twice)",
        "The order of the client's commands; an earlier command that failed",
        _5321,
    ),
    504: (
        "Command parameter not implemented (e.g. an unknown AUTH mechanism)",
        "The parameter or mechanism the client asked for",
        _5321,
    ),
    521: (
        "This host does not accept mail at all",
        "The address: the domain does not receive mail here",
        "RFC 7504",
    ),
    550: (
        "Mailbox unavailable: not found, no access, or refused by policy",
        "The recipient address spelling; the reply text and enhanced code say which reason",
        _5321,
    ),
    551: ("User not local; try another path", "The address the reply text gives", _5321),
    552: (
        "Exceeded storage allocation: message too big or mailbox over quota",
        "The message size against the server's SIZE limit, or the recipient's quota",
        _5321,
    ),
    553: (
        "Mailbox name not allowed (bad address syntax, or sender not permitted)",
        "The address syntax; for submission, that the login may send as that sender",
        _5321,
    ),
    554: (
        'Transaction failed; as the greeting it means "no SMTP service here" (RFC 5321 §3.1)',
        "The reply text: policy (relay denied, blocklist) or the server refusing this client outright",
        _5321,
    ),
    555: (
        "MAIL FROM/RCPT TO parameters not recognized or not implemented",
        "The ESMTP parameters: the server may not support SIZE, DSN or SMTPUTF8",
        _5321,
    ),
    556: (
        "The recipient's domain does not accept mail (e.g. it publishes a null MX)",
        "The recipient domain: it says it receives no mail (RFC 7505)",
        "RFC 7504",
    ),
    # --- RFC 4954 (AUTH)
    235: ("Authentication succeeded", "Nothing", _4954),
    334: (
        "Server challenge during AUTH: the client sends the next piece of the exchange",
        "Nothing: an AUTH exchange is in progress",
        "RFC 4954 §4",
    ),
    432: (
        "A password transition is needed (RFC 4954); Exchange also uses 432 for a stopped queue",
        "The account: the user must log in once with a plain mechanism over TLS",
        _4954,
    ),
    454: (
        "Temporary authentication failure, or TLS not available for a temporary reason",
        "The server's credential store or TLS setup; try again later",
        _4954,
    ),
    530: (
        "Authentication required (or STARTTLS required first)",
        "The client's settings: enable TLS and SMTP authentication",
        _4954,
    ),
    534: ("Authentication mechanism is too weak", "Use a stronger mechanism, or TLS first", _4954),
    535: (
        "Authentication credentials invalid",
        "Username and password (the log never shows the password)",
        _4954,
    ),
    538: (
        "Encryption required for the requested authentication mechanism",
        "Use STARTTLS (or port 465) before AUTH",
        _4954,
    ),
    # --- Common in logs, defined by no RFC
    420: (
        "Timeout or connection problem on the receiving side (Exchange-style)",
        "Network between the two servers; it usually clears",
        _SEEN,
    ),
    422: ("Recipient's mailbox over its storage limit (some servers)", "The recipient's quota", _SEEN),
    431: (
        "Receiving server out of memory or disk, or the recipient server too busy",
        "Nothing on the sending side; it is retried",
        _SEEN,
    ),
    441: ("The receiving server is not responding", "Reachability of the server", _SEEN),
    442: ("The connection dropped during the transmission", "Network stability, timeouts", _SEEN),
    446: ("Maximum hop count exceeded: an internal routing loop", "Forwarding rules on both sides", _SEEN),
    447: (
        "The message timed out on the way, because of the receiving server",
        "The receiving server's health; it is retried",
        _SEEN,
    ),
    449: ("Routing error (Exchange-style)", "DNS and routing settings of the recipient domain", _SEEN),
    471: (
        "Temporary local error or a content/anti-spam filter deferring the message",
        "The receiving side's filters; the reply text names them",
        _SEEN,
    ),
    510: ("Bad address: the recipient does not exist (used like 550 5.1.1)", "The recipient address", _SEEN),
    511: ("Bad address: the recipient does not exist (used like 550 5.1.1)", "The recipient address", _SEEN),
    512: (
        "The recipient's domain was not found in DNS (like 5.1.2)",
        "The domain's spelling and its MX/A records",
        _SEEN,
    ),
    513: ("Address type or syntax incorrect", "The address syntax", _SEEN),
    523: (
        "The message is larger than the recipient's server accepts (Exchange-style)",
        "The message size; send a link instead of large attachments",
        _SEEN,
    ),
    541: (
        "Rejected by the recipient's anti-spam filter or policy",
        "Content, sender reputation, SPF/DKIM/DMARC of the sending domain",
        _SEEN,
    ),
    571: (
        "Delivery not authorized, message refused (IIS/Exchange style for relay denied or blocked)",
        "Relay permission or a blocklist entry for the sending IP",
        _SEEN,
    ),
}

# RFC 5321 §4.2.1: the meaning of each digit, for codes no table knows.
BASIC_CLASS = {
    1: "positive preliminary reply (SMTP has no command that uses it)",
    2: "positive completion",
    3: "positive intermediate: more input expected",
    4: "transient negative completion",
    5: "permanent negative completion",
}
BASIC_CATEGORY = {
    0: "syntax",
    1: "information",
    2: "connections",
    3: "unspecified",
    4: "unspecified",
    5: "mail system",
}
