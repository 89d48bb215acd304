"""``NEED_DATA``: what both engines' ``next_event`` return when they cannot go on without more bytes
(or, for the server, without the answer to the last event). Test with ``is NEED_DATA``, or narrow a
union with ``isinstance(event, NeedData)``."""

from __future__ import annotations

__all__ = ["NEED_DATA", "NeedData"]


class NeedData:
    """The type of ``NEED_DATA``; there is one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()
"""Returned by ``next_event`` when the engine needs more bytes (or a reply) to go on."""
