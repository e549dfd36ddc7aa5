"""CESQL built-in functions (spec section 3.5 plus the casting functions) and their dispatch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from broker.filters.values import (
    ANY,
    BOOL,
    CAST,
    FUNCTION_EVALUATION,
    INT,
    INT_MAX,
    INT_MIN,
    MATH,
    STR,
    cast_bool,
    cast_int,
    cast_str,
    parse_int,
)


class FunctionError(Exception):
    """Raised by a function body: the error ``kind`` and the value the function still returns."""

    def __init__(self, kind: str, message: str, value: object) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.value = value


@dataclass(frozen=True, slots=True)
class Function:
    """One overload: fixed parameter types, an optional variadic type, the return type."""

    name: str
    params: tuple[str, ...]
    returns: str
    impl: Callable[..., object]
    variadic: str | None = None
    reads_event: bool = False
    """The implementation is called with the event first (never folded to a constant)."""

    def accepts(self, arity: int) -> bool:
        """Whether a call with ``arity`` arguments dispatches to this overload."""
        if self.variadic is None:
            return arity == len(self.params)
        return arity >= len(self.params)

    def param_type(self, index: int) -> str:
        """The type argument ``index`` is cast to."""
        if index < len(self.params):
            return self.params[index]
        return self.variadic or ANY


# Unicode White_Space (the spec's TRIM definition). Python's str.strip() would also remove
# the ASCII information separators U+001C..U+001F, which are control characters.
_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _abs(x: int) -> int:
    if x == INT_MIN:
        # |INT_MIN| does not fit in 32 bits; the spec answers INT_MAX plus a math error.
        raise FunctionError(MATH, "ABS(-2147483648) overflows a 32-bit integer", INT_MAX)
    return abs(x)


def _left(x: str, y: int) -> str:
    if y < 0:
        raise FunctionError(FUNCTION_EVALUATION, f"LEFT length must not be negative: {y}", x)
    return x[:y]


def _right(x: str, y: int) -> str:
    if y < 0:
        raise FunctionError(FUNCTION_EVALUATION, f"RIGHT length must not be negative: {y}", x)
    # x[-0:] would be the whole string, hence the explicit zero case.
    return x[-y:] if y else ""


def _start(x: str, pos: int) -> int | None:
    """The 0-based start index for a 1-based (or negative, from the end) position."""
    length = len(x)
    if pos > length or pos < -length:
        raise FunctionError(
            FUNCTION_EVALUATION,
            f"SUBSTRING position {pos} is outside a string of length {length}",
            "",
        )
    if pos == 0:
        return None
    return pos - 1 if pos > 0 else length + pos


def _substring(x: str, pos: int) -> str:
    start = _start(x, pos)
    return "" if start is None else x[start:]


def _substring_len(x: str, pos: int, count: int) -> str:
    start = _start(x, pos)
    if count < 0:
        raise FunctionError(
            FUNCTION_EVALUATION, f"SUBSTRING length must not be negative: {count}", ""
        )
    return "" if start is None else x[start : start + count]


MAX_STRING: Final = 65_536
"""Longest String that CONCAT and CONCAT_WS build: nested concatenations would otherwise
double a string at each level of the expression."""


def _concat(*parts: str) -> str:
    _check_length(sum(map(len, parts)), "CONCAT")
    return "".join(parts)


def _concat_ws(delimiter: str, *parts: str) -> str:
    _check_length(sum(map(len, parts)) + len(delimiter) * max(len(parts) - 1, 0), "CONCAT_WS")
    return delimiter.join(parts)


def _check_length(length: int, name: str) -> None:
    if length > MAX_STRING:
        raise FunctionError(
            FUNCTION_EVALUATION,
            f"{name} would build a String of {length} characters, over {MAX_STRING}", "",
        )


def _explicit(cast: Callable[[object], tuple[object, str | None]]) -> Callable[[object], object]:
    def run(value: object) -> object:
        result, message = cast(value)
        if message is not None:
            raise FunctionError(CAST, message, result)
        return result

    return run


def _is_int(x: str) -> bool:
    return parse_int(x) is not None


def _is_bool(x: str) -> bool:
    return x.lower() in ("true", "false")


_BUILTINS: Final = (
    Function("ABS", (INT,), INT, _abs),
    Function("LENGTH", (STR,), INT, len),
    Function("CONCAT", (), STR, _concat, variadic=STR),
    Function("CONCAT_WS", (STR,), STR, _concat_ws, variadic=STR),
    Function("LOWER", (STR,), STR, str.lower),
    Function("UPPER", (STR,), STR, str.upper),
    Function("TRIM", (STR,), STR, lambda x: x.strip(_WHITESPACE)),
    Function("LEFT", (STR, INT), STR, _left),
    Function("RIGHT", (STR, INT), STR, _right),
    Function("SUBSTRING", (STR, INT), STR, _substring),
    Function("SUBSTRING", (STR, INT, INT), STR, _substring_len),
    Function("INT", (ANY,), INT, _explicit(cast_int)),
    Function("BOOL", (ANY,), BOOL, _explicit(cast_bool)),
    Function("STRING", (ANY,), STR, lambda x: cast_str(x)),
    Function("IS_INT", (STR,), BOOL, _is_int),
    Function("IS_BOOL", (STR,), BOOL, _is_bool),
)

Conforms = Callable[[dict[str, object]], bool]


class _Shapes:
    """Where `CONFORMS()` asks whether an event fits the shape its (source, type) had so
    far: the broker's event catalog, once `use_shapes` installs it (until then, and in
    clients, every event conforms)."""

    conforms: Conforms = staticmethod(lambda event: True)


_SHAPES: Final = _Shapes()


def use_shapes(conforms: Conforms) -> None:
    """Answer `CONFORMS()` with `conforms` (the broker's catalog)."""
    _SHAPES.conforms = conforms


def _conforms(event: dict[str, object]) -> bool:
    return _SHAPES.conforms(event)


_EXTENSIONS: Final = (
    Function("CONFORMS", (), BOOL, _conforms, reads_event=True),
)

FUNCTIONS: Final[dict[str, tuple[Function, ...]]] = {}
for _function in (*_BUILTINS, *_EXTENSIONS):
    FUNCTIONS[_function.name] = (*FUNCTIONS.get(_function.name, ()), _function)


def resolve(name: str, arity: int) -> Function | None:
    """The overload of ``name`` (upper case) taking ``arity`` arguments, or ``None``."""
    for function in FUNCTIONS.get(name, ()):
        if function.accepts(arity):
            return function
    return None
