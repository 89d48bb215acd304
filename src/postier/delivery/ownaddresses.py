"""Where this server itself listens, so that delivery never hands a message back to itself.

Theory of operation. RFC 5321 §5.1: an SMTP client that finds itself among a domain's MX hosts must
not deliver there. The router drops MX records that carry one of our host names
(``postier.dns.mx.drop_self``), but an MX can name us by any other name (a CNAME, a stale record, a
second name of the host); then only its address gives it away. ``OwnAddresses`` holds the listening
sockets of ``[[listener]]`` as (address, port) pairs; the courier asks ``is_ours`` for each address
it is about to connect to. A wildcard listener (``0.0.0.0``, ``::``) stands for every address of
this host: an address is this host's when it is a loopback address or a socket can be bound to it
(the kernel refuses addresses it does not own; the answer is cached). An MX pointing at
``0.0.0.0`` or ``::`` (connecting there reaches this host) is ours when we listen on a loopback or
wildcard address of that port. Like Postfix's
"mail for … loops back to myself", the check is made by address and port, before connecting.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["OwnAddresses"]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(address: str) -> _IP | None:
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class OwnAddresses:
    """The (address, port) pairs this server listens on; see the module docstring."""

    def __init__(self, listeners: Iterable[tuple[str, int]] = ()) -> None:
        self._exact: set[tuple[_IP, int]] = set()
        self._wildcard_ports: set[int] = set()
        self._local: dict[_IP, bool] = {}
        for host, port in listeners:
            ip = _parse(host) if host else ipaddress.ip_address("0.0.0.0")
            if ip is None:
                continue  # a host name: nothing to compare an address with
            if ip.is_unspecified:
                self._wildcard_ports.add(port)
            else:
                self._exact.add((ip, port))

    def is_ours(self, address: str, port: int) -> bool:
        """True when connecting to ``address``:``port`` would reach this server."""
        ip = _parse(address)
        if ip is None:
            return False
        if ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this host's loopback
            loopback = any(mine.is_loopback and p == port for mine, p in self._exact)
            return loopback or port in self._wildcard_ports
        if (ip, port) in self._exact:
            return True
        return port in self._wildcard_ports and self._is_local(ip)

    def _is_local(self, ip: _IP) -> bool:
        known = self._local.get(ip)
        if known is None:
            known = self._local[ip] = ip.is_loopback or _can_bind(ip)
        return known


def _can_bind(ip: _IP) -> bool:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True
