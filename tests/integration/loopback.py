"""Loopback addresses for test peers: each peer gets its own 127.0.0.N (see ``peers.py``)."""

from __future__ import annotations

import errno
import itertools
import socket

__all__ = ["is_free", "loopback_address"]

_HOSTS = itertools.cycle(range(2, 255))


def is_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
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
