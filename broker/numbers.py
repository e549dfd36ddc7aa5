"""Whole numbers and flags from text someone else wrote (a client, a peer, a file): ASCII
digits within a range, and booleans spelled `true` / `false`; nothing else.

`int()` is the wrong tool for such text: it takes signs, blanks, underscores and every
Unicode decimal digit ("٣" is 3), refuses more than 4,300 digits with a ValueError, and
`str.isdigit()` admits digits `int()` refuses ("²"), so a check with one followed by a
parse with the other raises where nobody expects it. Everything that turns outside text
into a number goes through `whole_number`, which says what is wrong in words a problem
document or a CLI line can carry.
"""

from __future__ import annotations

from typing import Final

MAX_ID: Final = 2**63 - 1
"""The largest seq or id the store holds (a signed 64-bit integer)."""
INT32_MAX: Final = 2**31 - 1
"""The largest CloudEvents Integer (extension values such as `hopcount`)."""


class NumberError(ValueError):
    """Text that is not a whole number in range; str() says why (without the field name,
    which the caller adds)."""


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}… ({len(text)} characters)"


def whole_number(text: str, *, minimum: int = 0, maximum: int = MAX_ID) -> int:
    """`text` as an int: one or more ASCII digits (no sign, no blanks), from `minimum` to
    `maximum`. Raises NumberError saying which of the two it is not."""
    if not (text and text.isascii() and text.isdigit()):
        raise NumberError(f"must be a whole number in ASCII digits, got {_shown(text)}")
    significant = text.lstrip("0") or "0"
    # Compare lengths before converting: keeps int() away from huge inputs.
    if len(significant) > len(str(maximum)) or int(significant) > maximum:
        raise NumberError(f"must be at most {maximum}, got {_shown(text)}")
    value = int(significant)
    if value < minimum:
        raise NumberError(f"must be at least {minimum}, got {value}")
    return value


def whole_number_or(text: object, default: int, *, maximum: int = MAX_ID) -> int:
    """Like `whole_number` for values that may be anything (a stored attribute, a header
    from a peer); `default` when it is not a whole number in range. Ints pass through
    when in range (bools are not numbers)."""
    if type(text) is int:
        return text if 0 <= text <= maximum else default
    if not isinstance(text, str):
        return default
    try:
        return whole_number(text, maximum=maximum)
    except NumberError:
        return default


def flag(value: object) -> bool | None:
    """A CloudEvents Boolean: `True`/`False`, or the strings "true"/"false" that binary
    mode carries; None for anything else (a caller decides what that means)."""
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    return None
