"""Compiled CESQL expressions: ``compile_sql`` and the ``Expression`` it returns."""

from __future__ import annotations

import threading
from typing import Any

from broker.errors import InvalidFilter
from broker.filters.checks import FilterWarning, check
from broker.filters.compiler import Program, compile_program
from broker.filters.limits import FilterLimits, configured
from broker.filters.parser import Shape, parse_shaped
from broker.filters.values import EvalError


class Expression:
    """A CESQL expression compiled to closures; immutable and safe to share between tasks."""

    __slots__ = ("_program", "shape", "text", "warnings")

    def __init__(self, text: str, program: Program, shape: Shape) -> None:
        self.text = text
        self._program = program
        self.shape = shape
        """Its size, checked against the limits of every later compile of the same text."""
        self.warnings: tuple[FilterWarning, ...] = check(program)
        """Why it cannot match as a filter (an unknown function, not a condition, ...)."""

    @property
    def type(self) -> str:
        """The static result type: ``Boolean``, ``Integer``, ``String`` or ``Any``."""
        return self._program.type

    def evaluate(self, event: dict[str, Any]) -> tuple[object, EvalError | None]:
        """Evaluate against a structured-mode event dict; never raises.

        Returns the value and the first error met, or ``None``. On an error the value is
        the one the spec defines: the zero value of the expression's type, or the failing
        operation's own value when it is the whole expression (``ABS(-2147483648)``).
        """
        return self._program.evaluate(event)

    def matches(self, event: dict[str, Any]) -> bool:
        """Filter use: true only when the value is Boolean true and no error occurred."""
        return self._program.match(event)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile_sql(expression: str, *, data_paths: bool = True,
                limits: FilterLimits | None = None) -> Expression:
    """Parse and compile a CESQL v1 expression.

    ``data_paths`` (default on) enables the opsbus extension that reads JSON data fields
    as ``data.a.b``; with it off the dotted form is a parse error, as in plain CESQL.
    ``limits`` (the configured ones by default) bound the expression's size and shape.
    Raises ``broker.errors.InvalidFilter`` with ``position={"line", "column"}``, and its
    subclass ``FilterTooLarge`` naming the setting of a limit the expression is over.
    """
    if not isinstance(expression, str):
        raise InvalidFilter("a CESQL expression must be a string")
    limits = limits or configured()
    if len(expression) > limits.max_length:
        # Refused before the cache is even consulted: a megabyte is not hashed for nothing.
        Shape(len(expression), 0, 0, 0).check(limits)
    compiled = _CACHE.get((expression, bool(data_paths)))
    if compiled is None:
        root, shape = parse_shaped(expression, data_paths=data_paths, limits=limits)
        compiled = Expression(expression, compile_program(root), shape)
        _remember((expression, bool(data_paths)), compiled)
    else:
        compiled.shape.check(limits)  # compiled earlier under other limits
    return compiled


# Routes, subscriptions and the console recompile the same few texts over and over. Only
# successes are kept, each with its shape, so a text compiled under generous limits is
# still refused by a caller with tighter ones.
_CACHE_SIZE = 1024
_CACHE: dict[tuple[str, bool], Expression] = {}
_CACHE_LOCK = threading.Lock()  # filters are also compiled in worker threads


def _remember(key: tuple[str, bool], compiled: Expression) -> None:
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            # Evict the oldest entry (dicts keep insertion order): enough for a cache
            # whose working set is the configured filters.
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = compiled


def clear_cache() -> None:
    """Forget every compiled expression (benchmarks measure cold compiles with it)."""
    with _CACHE_LOCK:
        _CACHE.clear()
