"""CESQL value model: the three types, zero values, casts, errors and event attribute reads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

# The error kinds of CESQL v1 section 3.3, spelled as the conformance suite spells them.
PARSE: Final = "parse"
MATH: Final = "math"
CAST: Final = "cast"
MISSING_ATTRIBUTE: Final = "missingAttribute"
MISSING_FUNCTION: Final = "missingFunction"
FUNCTION_EVALUATION: Final = "functionEvaluation"
GENERIC: Final = "generic"
ERROR_KINDS: Final = frozenset(
    {PARSE, MATH, CAST, MISSING_ATTRIBUTE, MISSING_FUNCTION, FUNCTION_EVALUATION, GENERIC}
)

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

# Static types of expression nodes. ANY is an attribute read: its type is only known at run
# time, and where the spec needs a zero value for it, Boolean is assumed (section 3.2).
BOOL: Final = "Boolean"
INT: Final = "Integer"
STR: Final = "String"
ANY: Final = "Any"

ZERO: Final[dict[str, object]] = {BOOL: False, INT: 0, STR: "", ANY: False}

Value = bool | int | str
Position = dict[str, int]


@dataclass(frozen=True)
class EvalError:
    """One CESQL error: ``kind`` is one of ``ERROR_KINDS``; ``position`` is ``{line, column}``."""

    kind: str
    message: str
    position: Position | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the HTTP API."""
        return {"kind": self.kind, "message": self.message, "position": self.position}


class Failure(Exception):
    """Raised inside compiled closures to stop evaluation ("fail fast", spec section 4.1).

    ``value`` is the result the failing node itself defines (e.g. ``ABS`` overflow returns
    2147483647); it is only used when that node is the root of the expression, every other
    ancestor answers the zero value of its own type instead.
    """

    __slots__ = ("error", "node", "value")

    def __init__(self, error: EvalError, value: object, node: object) -> None:
        super().__init__(error.message)
        self.error = error
        self.value = value
        self.node = node


def type_of(value: object) -> str:
    """The CESQL type name of a runtime value (values are always bool, int or str)."""
    kind = type(value)
    if kind is bool:
        return BOOL
    if kind is int:
        return INT
    return STR


def zero_of(type_name: str) -> object:
    """The zero value of a CESQL type (section 3.1); Boolean for an unknown type."""
    return ZERO.get(type_name, False)


# ASCII digits only: Python's int() would also accept "1_000", " 7 " and Unicode digits.
_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def parse_int(text: str) -> int | None:
    """A String -> Integer cast: base 10, optional sign, 32-bit range, else ``None``."""
    if _INT_TEXT.fullmatch(text) is None:
        return None
    digits = text.lstrip("+-").lstrip("0")
    # Checking the length first keeps int() away from huge inputs (and Python's digit limit).
    if len(digits) > 10:
        return None
    number = int(text)
    if number < INT_MIN or number > INT_MAX:
        return None
    return number


def cast_int(value: object) -> tuple[int, str | None]:
    """Cast to Integer; returns the value and an error message, or ``None`` when it worked."""
    kind = type(value)
    if kind is int:
        return value, None  # type: ignore[return-value]
    if kind is bool:
        return (1 if value else 0), None
    number = parse_int(value)  # type: ignore[arg-type]
    if number is None:
        return 0, f"cannot cast the String {_quote(value)} to Integer"
    return number, None


def cast_bool(value: object) -> tuple[bool, str | None]:
    """Cast to Boolean; returns the value and an error message, or ``None`` when it worked."""
    kind = type(value)
    if kind is bool:
        return value, None  # type: ignore[return-value]
    if kind is int:
        return value != 0, None
    lowered = str(value).lower()
    if lowered == "true":
        return True, None
    if lowered == "false":
        return False, None
    return False, f"cannot cast the String {_quote(value)} to Boolean"


def cast_str(value: object) -> str:
    """Cast to String; always defined (section 3.7)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    return str(value)


def cast_to(value: object, type_name: str) -> tuple[object, str | None]:
    """Cast to the named type (``ANY`` leaves the value as it is)."""
    if type_name == INT:
        return cast_int(value)
    if type_name == BOOL:
        return cast_bool(value)
    if type_name == STR:
        return cast_str(value), None
    return value, None


def _quote(value: object) -> str:
    text = str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return repr(text)


class _Missing:
    """Sentinel for an attribute that is not there (``None`` is a JSON value: null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# Keys of a structured-mode event that carry the payload, not context attributes.
PAYLOAD_KEYS: Final = frozenset({"data", "data_base64"})


def from_json(value: object) -> object:
    """Map a JSON value read from an event onto a CESQL value, or ``MISSING``.

    Strings, booleans and 32-bit integers keep their type; anything else is represented as
    a String (spec section 3.2), as its compact JSON text. JSON null counts as absent.
    """
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        if INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return value
        return str(value)
    if value is None or value is MISSING:
        return MISSING
    return canonical_json(value)


def canonical_json(value: object) -> str:
    """Compact JSON text for a non-primitive value (floats, objects, arrays)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        # Not JSON at all (a Python object handed in by a caller): still never raise.
        return str(value)


def canonical_string(value: object) -> str | None:
    """The canonical string form of an attribute value for exact/prefix/suffix, or ``None``."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if value is None or value is MISSING:
        return None
    return canonical_json(value)


def read_data_path(event: dict[str, Any], path: tuple[str, ...]) -> object:
    """Follow a dot path into the event's JSON ``data``; ``MISSING`` when any step is absent."""
    current: object = event.get("data", MISSING)
    for segment in path:
        kind = type(current)
        if kind is dict:
            current = current.get(segment, MISSING)  # type: ignore[attr-defined]
        elif kind is list and len(segment) < 10 and segment.isdigit() and segment.isascii():
            index = int(segment)
            if index >= len(current):  # type: ignore[arg-type]
                return MISSING
            current = current[index]  # type: ignore[index]
        else:
            return MISSING
    return current
