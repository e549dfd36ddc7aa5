"""The CESQL syntax tree produced by the parser and consumed by the compiler."""

from __future__ import annotations

from dataclasses import dataclass

from broker.filters.values import Position


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """Base of every node; ``pos`` is where the node's operator or token starts."""

    pos: Position


@dataclass(frozen=True, slots=True, eq=False)
class Literal(Node):
    """A boolean, integer or string literal."""

    value: bool | int | str


@dataclass(frozen=True, slots=True, eq=False)
class Attribute(Node):
    """A context attribute or extension, by its lower-cased name."""

    name: str


@dataclass(frozen=True, slots=True, eq=False)
class DataPath(Node):
    """The opsbus extension: a dot path into the event's JSON ``data`` (``data.a.b``)."""

    path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class Exists(Node):
    """``EXISTS identifier``."""

    target: Attribute | DataPath


@dataclass(frozen=True, slots=True, eq=False)
class Unary(Node):
    """``NOT x`` or ``-x``."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True, eq=False)
class Binary(Node):
    """Arithmetic (``* / % + -``) and comparison (``= != <> < <= > >=``) operators."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, eq=False)
class Logic(Node):
    """A left-to-right chain of one logic operator (``AND``, ``OR`` or ``XOR``)."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Like(Node):
    """``x [NOT] LIKE 'pattern'``; the pattern is always a string literal."""

    operand: Node
    pattern: str
    negated: bool


@dataclass(frozen=True, slots=True, eq=False)
class In(Node):
    """``x [NOT] IN (y1, y2, ...)``."""

    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True, eq=False)
class Call(Node):
    """A function invocation; ``name`` is upper-cased (function names are case-insensitive)."""

    name: str
    args: tuple[Node, ...]
