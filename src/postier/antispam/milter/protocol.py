"""The Sendmail milter protocol, version 6, MTA side: packets out, replies in. Pure (no I/O).

Theory of operation. Every packet is ``uint32 length (network order) · command octet · data``, the
length counting the command octet. The MTA opens with ``O`` (option negotiation: version, the actions
it allows, the protocol steps it can skip); the filter answers ``O`` with the actions it wants and the
steps it does not want to see (``SMFIP_NO*``) or will not answer (``SMFIP_NR_*``). Then, per message:
``C`` connect, ``H`` helo, ``M`` mail, ``R`` rcpt …, ``T`` data, ``L`` header …, ``N`` end of headers,
``B`` body chunks, ``E`` end of message; each answered by ``c`` continue or a final verdict (``a``
accept, ``r`` reject, ``t`` tempfail, ``d`` discard, ``y`` a reply of its own). At ``E`` the filter
first sends its modifications (``h`` add header, ``i`` insert header, ``m`` change header, ``b``
replace body, ``q`` quarantine; ``p`` progress only keeps the MTA waiting), then the verdict.

``MilterParser`` cuts a byte stream into ``Response`` values and raises ``MilterProtocolError`` on
anything malformed (a length over ``MAX_PACKET``, an unknown reply, a truncated field): whatever bytes
a filter sends, the parser gives responses or that one error (tests/property, tests/fuzz).
References: Sendmail ``include/libmilter/mfdef.h``; Postfix ``src/milter/milter8.c``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from postier.mail.errors import PostierError

__all__ = [
    "MAX_CHUNK",
    "MAX_PACKET",
    "Action",
    "MilterParser",
    "MilterProtocolError",
    "Protocol",
    "Response",
    "encode",
    "encode_optneg",
    "nul_strings",
]

VERSION = 6
MAX_CHUNK = 65_535
"""The largest body chunk sent in one ``B`` packet (MILTER_CHUNK_SIZE)."""
MAX_PACKET = 1 << 20
"""Replies longer than this are a protocol error (a replaced body comes in chunks of at most 64 KiB)."""


class Action(IntFlag):
    """SMFIF_*: what the filter may do to the message."""

    ADDHDRS = 0x01
    CHGBODY = 0x02
    ADDRCPT = 0x04
    DELRCPT = 0x08
    CHGHDRS = 0x10
    QUARANTINE = 0x20
    CHGFROM = 0x40
    ADDRCPT_PAR = 0x80
    SETSYMLIST = 0x100


class Protocol(IntFlag):
    """SMFIP_*: steps the filter does not want (NO*) or will not answer (NR_*)."""

    NOCONNECT = 0x01
    NOHELO = 0x02
    NOMAIL = 0x04
    NORCPT = 0x08
    NOBODY = 0x10
    NOHDRS = 0x20
    NOEOH = 0x40
    NR_HDR = 0x80
    NOUNKNOWN = 0x100
    NODATA = 0x200
    SKIP = 0x400
    RCPT_REJ = 0x800
    NR_CONN = 0x1000
    NR_HELO = 0x2000
    NR_MAIL = 0x4000
    NR_RCPT = 0x8000
    NR_DATA = 0x10000
    NR_UNKN = 0x20000
    NR_EOH = 0x40000
    NR_BODY = 0x80000
    HDR_LEADSPC = 0x100000


ALLOWED_ACTIONS = Action.ADDHDRS | Action.CHGBODY | Action.CHGHDRS | Action.QUARANTINE
"""What Postier lets a filter do: envelope changes (sender, recipients) are not offered."""
OFFERED_PROTOCOL = (
    Protocol.NOCONNECT
    | Protocol.NOHELO
    | Protocol.NOMAIL
    | Protocol.NORCPT
    | Protocol.NOBODY
    | Protocol.NOHDRS
    | Protocol.NOEOH
    | Protocol.NR_HDR
    | Protocol.NOUNKNOWN
    | Protocol.NODATA
    | Protocol.SKIP
    | Protocol.NR_CONN
    | Protocol.NR_HELO
    | Protocol.NR_MAIL
    | Protocol.NR_RCPT
    | Protocol.NR_DATA
    | Protocol.NR_UNKN
    | Protocol.NR_EOH
    | Protocol.NR_BODY
)
"""Steps Postier can leave out or not wait for, when the filter asks (never HDR_LEADSPC)."""

_FINAL = frozenset("acdrtys")
_KNOWN = frozenset(b"acdrtyhimbqps+-2elO")


class MilterProtocolError(PostierError):
    """The filter sent something that is not milter protocol."""


@dataclass(frozen=True, slots=True)
class Response:
    """One packet from the filter: ``command`` (one ASCII letter) and its decoded fields."""

    command: str
    data: bytes = b""

    @property
    def is_final(self) -> bool:
        """A verdict for the current step (continue, accept, reject, tempfail, discard, reply, skip)."""
        return self.command in _FINAL

    def strings(self) -> list[str]:
        """The NUL-terminated strings of ``data`` (header name and value, reply text, reason)."""
        return nul_strings(self.data)

    def indexed(self) -> tuple[int, str, str]:
        """``i`` / ``m``: ``(index, name, value)``."""
        if len(self.data) < 4:
            raise MilterProtocolError(f"milter {self.command!r}: no index")
        (index,) = struct.unpack("!I", self.data[:4])
        fields = nul_strings(self.data[4:])
        if len(fields) != 2:
            raise MilterProtocolError(f"milter {self.command!r}: expected name and value")
        return index, fields[0], fields[1]

    def optneg(self) -> tuple[int, Action, Protocol]:
        """``O``: ``(version, actions, protocol)``."""
        if len(self.data) < 12:
            raise MilterProtocolError("milter option negotiation: short reply")
        version, actions, protocol = struct.unpack("!III", self.data[:12])
        return version, Action(actions & 0x1FF), Protocol(protocol & 0x1FFFFF)


def nul_strings(data: bytes) -> list[str]:
    if data and not data.endswith(b"\0"):
        raise MilterProtocolError("milter string without its NUL terminator")
    return [part.decode("utf-8", "replace") for part in data[:-1].split(b"\0")] if data else []


def encode(command: str, *fields: bytes | str) -> bytes:
    """One packet: ``command`` and ``fields``, each string NUL-terminated, bytes as they are."""
    payload = b"".join(f.encode("utf-8") + b"\0" if isinstance(f, str) else f for f in fields)
    return struct.pack("!IB", len(payload) + 1, ord(command)) + payload


def encode_optneg(actions: Action = ALLOWED_ACTIONS, protocol: Protocol = OFFERED_PROTOCOL) -> bytes:
    return encode("O", struct.pack("!III", VERSION, int(actions), int(protocol)))


def encode_connect(hostname: str, ip: str, port: int) -> bytes:
    family = b"6" if ":" in ip else b"4"
    return encode("C", hostname, family + struct.pack("!H", port & 0xFFFF), ip)


def encode_macros(stage: str, macros: dict[str, str]) -> bytes:
    """``D``: the macros for the step ``stage`` (its command letter)."""
    fields: list[bytes | str] = [stage.encode("ascii")]
    for name, value in macros.items():
        fields += [name, value]
    return encode("D", *fields)


class MilterParser:
    """Incremental: ``feed(bytes)``, then ``next()`` until it returns None."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> Response | None:
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack("!I", buffer[:4])
        if length < 1 or length > MAX_PACKET:
            raise MilterProtocolError(f"milter packet of {length} octets")
        if len(buffer) < 4 + length:
            return None
        command, data = buffer[4], bytes(buffer[5 : 4 + length])
        del buffer[: 4 + length]
        if command not in _KNOWN:
            raise MilterProtocolError(f"unknown milter reply {command:#04x}")
        response = Response(chr(command), data)
        _validate(response)
        return response


def _validate(response: Response) -> None:
    command = response.command
    if command in "hq":
        count = 2 if command == "h" else 1
        if len(response.strings()) != count:
            raise MilterProtocolError(f"milter {command!r}: expected {count} strings")
    elif command in "im":
        response.indexed()
    elif command == "O":
        response.optneg()
    elif command == "y":
        fields = response.strings()
        if len(fields) != 1 or not _is_reply(fields[0]):
            raise MilterProtocolError("milter reply code: not 'NNN text'")


def _is_reply(text: str) -> bool:
    code = text[:3]
    return len(text) >= 3 and code.isdigit() and code[0] in "45" and (len(text) == 3 or text[3] in " -")
