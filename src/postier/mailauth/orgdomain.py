"""Organizational domains (RFC 7489 §3.2) from the Public Suffix List bundled with ``publicsuffixlist``
(the list is the package's data: upgrading the package updates it; nothing is downloaded at run time).

The organizational domain of ``mail.example.co.uk`` is ``example.co.uk``: the public suffix plus one
label. The whole list is used, ICANN and private sections (RFC 7489 §3.2 names the list, not a
section), so ``a.github.io`` and ``b.github.io`` are different organizations. A name that is itself a
public suffix is its own organizational domain.
"""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList

__all__ = ["org_domain"]


@cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()


@cache
def org_domain(domain: str) -> str:
    name = domain.lower().rstrip(".")
    found = _list().privatesuffix(name)
    return str(found) if found else name
