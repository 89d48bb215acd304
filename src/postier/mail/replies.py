"""The reply catalogue: every reply Postier sends, by name.

Client-facing text is generic and plain English; details belong in the log. ``postier explain``
reads this module, so each name here is also documentation. Replies whose text depends on the
session (the greeting, EHLO, "queued as ID") are built by small functions at the bottom.

Allowed codes per command follow RFC 5321 §4.3.2.
"""

from __future__ import annotations

import functools

from postier.mail.reply import EnhancedStatus, Reply

__all__ = ["S", "dnsbl_blocked", "greeting", "queued"]


def _r(code: int, status: str | None, text: str) -> Reply:
    return Reply(code, EnhancedStatus.parse(status) if status else None, text)


class S:
    """Named replies. Attribute names are the vocabulary the engine, the driver and the log share."""

    # --- 2xx ---------------------------------------------------------------------------------------
    OK = _r(250, "2.0.0", "Ok")
    SENDER_OK = _r(250, "2.1.0", "Sender ok")
    RECIPIENT_OK = _r(250, "2.1.5", "Recipient ok")
    RESET_OK = _r(250, "2.0.0", "Reset ok")
    NOOP_OK = _r(250, "2.0.0", "Ok")
    BYE = _r(221, "2.0.0", "Bye")
    VRFY_CANNOT = _r(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
    HELP = _r(
        214,
        "2.0.0",
        "See https://www.rfc-editor.org/rfc/rfc5321 — commands: EHLO HELO MAIL RCPT "
        "DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
    )
    TLS_READY = _r(220, "2.0.0", "Ready to start TLS")
    AUTH_OK = _r(235, "2.7.0", "Authentication successful")
    DELIVERED_TO_MAILDIR = _r(250, "2.0.0", "Delivered to maildir")

    # --- 3xx (intermediate: no enhanced status) ----------------------------------------------------
    START_DATA = _r(354, None, "End data with <CR><LF>.<CR><LF>")

    # --- 4xx ---------------------------------------------------------------------------------------
    SERVICE_UNAVAILABLE = _r(421, "4.3.2", "Service shutting down, try again later")
    INTERNAL_ERROR = _r(421, "4.3.0", "Internal error, closing connection; try again later")
    TOO_MANY_ERRORS = _r(421, "4.7.0", "Too many errors, closing connection")
    TOO_MANY_CONNECTIONS = _r(421, "4.7.0", "Too many connections, try again later")
    TIMEOUT = _r(421, "4.4.2", "Timeout exceeded, closing connection")
    AUTH_LOCKED_OUT = _r(421, "4.7.0", "Too many failed authentications, try again later")
    QUEUE_ERROR = _r(451, "4.3.0", "Local error in processing, try again later")
    QUEUE_FULL = _r(452, "4.3.1", "Insufficient system storage, try again later")
    TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")
    RATE_LIMITED = _r(450, "4.7.1", "Rate limit exceeded, try again later")
    CONNECTION_RATE_LIMITED = _r(421, "4.7.0", "Too many connections from your address, try again later")
    TEMP_AUTH_FAILURE = _r(454, "4.7.0", "Temporary authentication failure")
    TLS_UNAVAILABLE = _r(454, "4.7.0", "TLS not available due to temporary reason")
    MAILBOX_FULL = _r(452, "4.2.2", "Mailbox full, try again later")
    POLICY_TEMPFAIL = _r(451, "4.3.0", "Temporary failure in checking this; try again later")
    POLICY_TEMPFAIL_CONNECT = _r(421, "4.3.0", "Temporary failure, closing connection; try again later")
    MAILBOX_WRITE_ERROR = _r(451, "4.3.0", "Cannot write to the mailbox, try again later")
    BODY_UNREADABLE_RETRY = _r(451, "4.3.0", "The queued message body cannot be read; trying once more")

    # --- 5xx: syntax and sequence --------------------------------------------------------------------
    UNKNOWN_COMMAND = _r(500, "5.5.1", "Command unrecognized")
    LINE_TOO_LONG = _r(500, "5.5.6", "Line too long")
    BARE_LINE_ENDING = _r(500, "5.5.2", "Bare CR or LF not allowed; lines end with CRLF (RFC 5321 §2.3.8)")
    SYNTAX_ERROR = _r(501, "5.5.2", "Syntax error in parameters or arguments")
    BAD_SENDER_SYNTAX = _r(501, "5.1.7", "Bad sender address syntax")
    BAD_RECIPIENT_SYNTAX = _r(501, "5.1.3", "Bad recipient address syntax")
    BAD_SEQUENCE = _r(503, "5.5.1", "Bad sequence of commands")
    NO_VALID_RECIPIENTS = _r(554, "5.5.1", "No valid recipients")
    NOT_IMPLEMENTED = _r(502, "5.5.1", "Command not implemented")
    PARAM_NOT_IMPLEMENTED = _r(504, "5.5.4", "Command parameter not implemented")
    UNKNOWN_PARAMETER = _r(555, "5.5.4", "MAIL FROM/RCPT TO parameter not recognized or not implemented")
    BAD_PARAMETER_VALUE = _r(501, "5.5.4", "Invalid parameter value")
    HELLO_FIRST = _r(503, "5.5.1", "Send EHLO or HELO first")
    MAIL_FIRST = _r(503, "5.5.1", "Need MAIL before RCPT")
    NESTED_MAIL = _r(503, "5.5.1", "Sender already specified")
    IN_TRANSACTION = _r(503, "5.5.1", "Not allowed during a mail transaction")
    DATA_AFTER_BDAT = _r(503, "5.5.1", "DATA not allowed after BDAT in the same transaction")
    BINARYMIME_NEEDS_BDAT = _r(503, "5.5.1", "BODY=BINARYMIME requires BDAT (RFC 3030)")
    SESSION_REFUSED = _r(503, "5.5.1", "Session refused; only QUIT is accepted")
    EARLY_TALKER = _r(554, "5.5.0", "Protocol error: data sent before the greeting")

    # --- 5xx: addresses, size, content ---------------------------------------------------------------
    MESSAGE_TOO_BIG = _r(552, "5.3.4", "Message size exceeds fixed maximum message size")
    HEADER_TOO_BIG = _r(552, "5.3.4", "Message header section exceeds the maximum size")
    TOO_MANY_CHUNKS = _r(552, "5.3.4", "Too many small BDAT chunks in one message")
    UTF8_NOT_ALLOWED = _r(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    BAD_DATA_LINE_ENDING = _r(
        550, "5.6.0", "Message contains a bare CR or LF; lines end with CRLF (RFC 5321 §2.3.8)"
    )
    DATA_LINE_TOO_LONG = _r(550, "5.6.0", "Message has a line longer than 1000 octets (RFC 5321 §4.5.3.1.6)")
    BAD_8BIT = _r(554, "5.6.1", "Message has 8-bit data but was declared 7BIT")

    # --- 5xx: policy ---------------------------------------------------------------------------------
    RELAY_DENIED = _r(554, "5.7.1", "Relay access denied")
    AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")
    REQUIRETLS_NEEDS_TLS = _r(530, "5.7.10", "REQUIRETLS needs an encrypted connection (RFC 8689)")
    ENCRYPTION_REQUIRED = _r(538, "5.7.11", "Encryption required for requested authentication mechanism")
    AUTH_FAILED = _r(535, "5.7.8", "Authentication credentials invalid")
    AUTHZID_REFUSED = _r(535, "5.7.8", "Authorization identity must be empty or the same as the login")
    AUTH_CANCELLED = _r(501, "5.7.0", "Authentication cancelled")
    AUTH_MALFORMED = _r(501, "5.5.2", "Malformed authentication response")
    AUTH_MECHANISM_UNKNOWN = _r(504, "5.5.4", "Unrecognized authentication mechanism")
    AUTH_ALREADY = _r(503, "5.5.1", "Already authenticated")
    SENDER_NOT_OWNED = _r(553, "5.7.1", "Sender address not owned by the authenticated user")
    UNKNOWN_USER = _r(550, "5.1.1", "No such user here")
    SUPPRESSED = _r(550, "5.1.1", "Recipient address suppressed (an earlier hard bounce or unsubscribe)")
    MAILBOX_OVER_QUOTA = _r(552, "5.2.2", "Mailbox full: the message does not fit in the quota")
    TOO_MANY_HOPS = _r(554, "5.4.6", "Too many hops: the message is in a mail loop")
    BODY_UNREADABLE = _r(554, "5.3.0", "The queued message body cannot be read back (storage damaged)")
    TLS_ALREADY = _r(503, "5.5.1", "TLS already active")

    # --- anti-spam (postier.antispam; docs/antispam.md) ----------------------------------------------
    GREYLISTED = _r(451, "4.7.1", "Greylisted, please try again later")
    SPAM_REJECTED = _r(554, "5.7.1", "Message rejected as spam")
    SPAM_DEFERRED = _r(451, "4.7.1", "Message deferred, try again later")
    MILTER_REJECTED = _r(550, "5.7.1", "Message content rejected")
    MILTER_DEFERRED = _r(451, "4.7.1", "Message content deferred, try again later")
    AUTH_NEEDS_EHLO = _r(503, "5.5.1", "Send EHLO before AUTH")

    # --- mail authentication (SPF, DMARC: docs/mailauth.md) -------------------------------------------
    SPF_FAIL = _r(550, "5.7.23", "SPF validation failed: the sender's domain does not authorize this host")
    SPF_TEMPERROR = _r(451, "4.7.24", "SPF validation error (DNS), try again later")
    DMARC_REJECT = _r(550, "5.7.1", "Rejected by the DMARC policy of the From domain")
    DMARC_TEMPERROR = _r(451, "4.7.1", "DMARC policy of the From domain unavailable, try again later")


@functools.lru_cache(maxsize=8)
def greeting(hostname: str) -> Reply:
    """The 220 greeting (RFC 5321 §4.3.1): no enhanced status before EHLO. One per host name (every
    connection asks)."""
    return Reply(220, None, f"{hostname} ESMTP Postier")


def dnsbl_blocked(ip: str, zone: str) -> Reply:
    """The DNSBL refusal at RCPT (postscreen's wording): the client's address and the block list."""
    return Reply(554, EnhancedStatus(5, 7, 1), f"Service unavailable; client [{ip}] blocked using {zone}")


def queued(queue_id: str) -> Reply:
    """The end-of-data reply. The queue id comes last, so log readers can split on the last space."""
    return Reply(250, EnhancedStatus(2, 0, 0), f"Ok: queued as {queue_id}")
