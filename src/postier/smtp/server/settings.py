"""What the server engine needs to know about its listener. Pure data; the app builds it from config."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EngineSettings"]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    hostname: str = "localhost"
    max_message_bytes: int = 50 * 1024 * 1024  # advertised as SIZE; 552 5.3.4 beyond
    max_recipients: int = 1000  # 452 4.5.3 beyond (RFC 5321 §4.5.3.1.8: at least 100)
    max_errors: int = 10  # then 421 4.7.0 and close
    max_command_line: int = 512  # RFC 5321 §4.5.3.1.4, CRLF included; longer: 500 5.5.6
    max_text_line: int = 1000  # RFC 5321 §4.5.3.1.6, CRLF included
    can_starttls: bool = False  # a certificate is configured and the session is not yet TLS
    is_tls: bool = False  # the session started with TLS (implicit TLS, RFC 8314)
    auth_mechanisms: tuple[str, ...] = ()  # e.g. ("PLAIN", "LOGIN"); empty: no AUTH
    auth_requires_tls: bool = True  # AUTH offered only under TLS (538 5.7.11 before)
    mail_requires_auth: bool = False  # submission: MAIL before AUTH → 530 5.7.0
    hold_message_octets: int = 256 * 1024  # kept in memory; beyond, MessageData events (spooled)
    max_header_octets: int = 1 << 20  # the header section (RFC 5322 §2.1); 552 5.3.4 beyond
    bdat_min_chunk_octets: int = 4096  # a non-LAST BDAT chunk below this is "small"…
    bdat_max_small_chunks: int = 100  # …and a session may send this many: 552 5.3.4 beyond
    lmtp: bool = False  # RFC 2033: LHLO instead of EHLO/HELO, one reply per recipient after data
