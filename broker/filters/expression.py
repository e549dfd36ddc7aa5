"""Compiled CESQL expressions: ``compile_sql`` and the ``Expression`` it returns."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from broker.errors import InvalidFilter
from broker.filters.compiler import Program, compile_program
from broker.filters.parser import parse
from broker.filters.values import EvalError


class Expression:
    """A CESQL expression compiled to closures; immutable and safe to share between tasks."""

    __slots__ = ("_program", "text")

    def __init__(self, text: str, program: Program) -> None:
        self.text = text
        self._program = program

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


def compile_sql(expression: str, *, data_paths: bool = True) -> Expression:
    """Parse and compile a CESQL v1 expression.

    ``data_paths`` (default on) enables the opsbus extension that reads JSON data fields
    as ``data.a.b``; with it off the dotted form is a parse error, as in plain CESQL.
    Raises ``broker.errors.InvalidFilter`` with ``position={"line", "column"}``.
    """
    if not isinstance(expression, str):
        raise InvalidFilter("a CESQL expression must be a string")
    return _compile_cached(expression, bool(data_paths))


@lru_cache(maxsize=1024)
def _compile_cached(expression: str, data_paths: bool) -> Expression:
    # Routes, subscriptions and the console recompile the same few texts over and over.
    return Expression(expression, compile_program(parse(expression, data_paths=data_paths)))
