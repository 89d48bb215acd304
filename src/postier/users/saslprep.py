"""SASLprep (RFC 4013): the string preparation RFC 4616 §2 asks of PLAIN passwords.

It makes one password out of the many ways a keyboard can spell it (composed or decomposed accents,
no-break spaces, full-width letters) and refuses control and private-use characters. ASCII passwords
made of printable characters come out unchanged. Passwords are prepared both when they are set and when
they are checked, so a client that prepares them and one that does not log in alike.
"""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["saslprep"]

# RFC 4013 §2.3: prohibited output (C.1.2 is mapped to SPACE first, so it cannot occur here).
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool) -> str:
    """Prepare ``text``; raise ValueError when it holds a prohibited character or breaks the bidi rule.

    ``allow_unassigned`` is False for stored strings (setting a password) and True for queries (checking
    one), as RFC 3454 §7 says.
    """
    # §2.1 Mapping: non-ASCII spaces (C.1.2) → SPACE; "commonly mapped to nothing" (B.1) → removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # §2.2 Normalization: Unicode form KC.
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared:
        return prepared
    for ch in prepared:
        if any(table(ch) for table in _PROHIBITED):
            raise ValueError(f"prohibited character U+{ord(ch):04X}")  # §2.3
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError(f"unassigned code point U+{ord(ch):04X}")  # §2.5
    _check_bidi(prepared)
    return prepared


def _check_bidi(text: str) -> None:
    """RFC 3454 §6 (via RFC 4013 §2.4): right-to-left text must not mix with left-to-right text and must
    begin and end with a right-to-left character."""
    if not any(stringprep.in_table_d1(ch) for ch in text):
        return
    if any(stringprep.in_table_d2(ch) for ch in text):
        raise ValueError("mixes right-to-left and left-to-right characters")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        raise ValueError("right-to-left text must begin and end with a right-to-left character")
