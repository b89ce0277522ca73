"""Text that may enter the event log, checked at the edge.

Whatever a command carries is stored for ever and replayed by every follower, so text is
normalised (NFC: the same name is the same string) and refused when it holds characters no
ticket, name or title needs and that break or mislead whoever reads them later: control
characters (NUL cannot even be stored in a PostgreSQL text column), lone surrogates (not
UTF-8), and in one-line texts the bidirectional controls that make a title read otherwise than
it is stored (U+202E turns "cod.exe" into "exe.doc").

- `SafeLine`: names, titles, venues, categories, reasons: one line, no controls at all.
- `SafeText`: descriptions: tabs and line breaks allowed, other controls refused.
- `StripePaymentMethodId`: a Stripe PaymentMethod id (`pm_card_visa`, `pm_1NzX...`).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final

from pydantic import AfterValidator, Field

# Characters that reorder what follows them on screen (Unicode bidi embedding, override and
# isolate controls, and the implicit marks).
BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Invisible characters that let two names or titles look the same (zero-width space, word
# joiner, byte order mark, Mongolian vowel separator, tag characters). The zero-width joiner
# and non-joiner stay allowed: emoji sequences and several scripts need them.
INVISIBLE: Final = frozenset("\u180e\u200b\u2060\u2061\u2062\u2063\u2064\ufeff")
TAGS: Final = range(0xE0000, 0xE0080)
LINE_BREAKS_AND_TABS: Final = frozenset("\t\n\r")
# The JSON schema's description of a one-line text (the validator below is what decides; tag
# characters, beyond the Basic Multilingual Plane, are left out of this ECMA-262 pattern).
SAFE_LINE_PATTERN: Final = (
    r"^[^\x00-\x1f\x7f-\x9f\u061c\u180e\u200b\u200e\u200f\u2028\u2029\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u2069\ufeff]*$"
)
SAFE_TEXT_PATTERN: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"


def _refused(character: str, multiline: bool) -> str | None:
    """Why this character may not be stored, or None."""
    category = unicodedata.category(character)
    if category == "Cc":
        if multiline and character in LINE_BREAKS_AND_TABS:
            return None
        return "control characters are not allowed" + (
            "" if multiline else " (this text is one line)"
        )
    if category == "Cs":
        return "lone surrogates are not valid Unicode text"
    if not multiline:
        if character in BIDI_CONTROLS:
            return "bidirectional control characters are not allowed"
        if character in INVISIBLE or ord(character) in TAGS:
            return "invisible characters are not allowed"
        if category in ("Zl", "Zp"):
            return "line or paragraph separators are not allowed (this text is one line)"
    return None


def safe_text(value: str, multiline: bool = False) -> str:
    """`value` in NFC; ValueError if it holds a character it may not (see the module)."""
    if not value.isascii() or not value.isprintable():
        for character in value:
            reason = _refused(character, multiline)
            if reason is not None:
                raise ValueError(reason)  # the value itself is not echoed: it may be anything
        value = unicodedata.normalize("NFC", value)
    return value


def _line(value: str) -> str:
    return safe_text(value, multiline=False)


def _multiline(value: str) -> str:
    return safe_text(value, multiline=True)


SafeLine = Annotated[
    str, AfterValidator(_line), Field(json_schema_extra={"pattern": SAFE_LINE_PATTERN})
]
SafeText = Annotated[
    str, AfterValidator(_multiline), Field(json_schema_extra={"pattern": SAFE_TEXT_PATTERN})
]

# Stripe's ids are an object prefix, an underscore and up to a few dozen ASCII letters,
# digits and underscores; test-mode shortcuts (pm_card_visa, pm_card_chargeDeclined) too.
PAYMENT_METHOD_PATTERN: Final = r"^pm_[A-Za-z0-9_]{1,96}$"
StripePaymentMethodId = Annotated[
    str,
    Field(
        pattern=PAYMENT_METHOD_PATTERN,
        description="a Stripe PaymentMethod id, e.g. `pm_card_visa`",
        examples=["pm_card_visa"],
    ),
]
