"""Loopback addresses for test peers: each peer gets its own 127.0.0.N (see ``peers.py``)."""

from __future__ import annotations

import errno
import itertools
import random
import socket

__all__ = ["is_free", "loopback_address"]

# In turn (an address is not met again until 252 others were handed out, so a peer of an earlier test
# is long gone), from a random point: two test runs on one machine start far apart.
_START = random.SystemRandom().randrange(253)
_HOSTS = itertools.cycle([*range(2 + _START, 255), *range(2, 2 + _START)])


def is_free(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether ``address:port`` can be bound now (IPv4 or IPv6, TCP or UDP)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def loopback_address(port: int = 25) -> str:
    """The next 127.0.0.N (N ≥ 2) on which nothing listens on ``port``."""
    for _ in range(253):
        address = f"127.0.0.{next(_HOSTS)}"
        if is_free(address, port):
            return address
    raise RuntimeError(f"no free 127.0.0.N for port {port}")
