"""Compile-time checks of a CESQL expression used as a filter: mistakes that make it never
match, found before any event is evaluated (spec 3.3: "some error checks SHOULD be done at
compile time"). They are warnings, not parse errors: the expression still means what the
spec says (an unknown function is a ``missingFunction`` error when evaluated)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

from broker.filters import functions as fn
from broker.filters.compiler import Program
from broker.filters.nodes import (
    Attribute,
    Binary,
    Call,
    DataPath,
    Exists,
    In,
    Like,
    Logic,
    Node,
    Unary,
)
from broker.filters.values import ANY, INT, STR, Position

UNKNOWN_FUNCTION: Final = "unknownFunction"
NOT_A_CONDITION: Final = "notBoolean"
CONSTANT: Final = "neverMatches"
BARE_NAME: Final = "bareName"
NOT_PRECEDENCE: Final = "notPrecedence"

BLOCKING: Final = frozenset({UNKNOWN_FUNCTION, NOT_A_CONDITION, CONSTANT})
"""Codes of filters that cannot work as written, refused where a filter is saved."""


@dataclass(frozen=True, slots=True)
class FilterWarning:
    """One finding: ``code`` (see the constants above), a message, where it is.

    ``where`` locates the expression inside a dialect object (``filter.all[1].sql``);
    ``position`` is the ``{line, column}`` of the node it is about.
    """

    code: str
    message: str
    position: Position | None = None
    where: str = "filter"

    @property
    def blocking(self) -> bool:
        """True when the filter cannot work as written (see ``BLOCKING``)."""
        return self.code in BLOCKING

    def at(self, where: str) -> FilterWarning:
        """The same finding, located inside a dialect object."""
        return replace(self, where=where)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the HTTP API."""
        return {"code": self.code, "message": self.message, "position": self.position,
                "where": self.where}


def check(program: Program) -> tuple[FilterWarning, ...]:
    """What is wrong with ``program`` as a filter, most serious first."""
    root = program.root
    warnings = [w for w in map(_unknown, _walk(root, Call)) if w is not None]
    kind = program.type
    if kind in (INT, STR):
        warnings.append(FilterWarning(
            NOT_A_CONDITION, f"the expression is {'an' if kind == INT else 'a'} {kind}, not a"
            " condition: as a filter it never matches (compare it: ... = 'x')", root.pos))
    elif not warnings and not any(True for _ in _walk(root, Attribute, DataPath, Exists)):
        value, error = program.evaluate({})
        if value is not True or error is not None:
            warnings.append(FilterWarning(
                CONSTANT, "the expression reads nothing from the event and is never true:"
                " as a filter it never matches", root.pos))
    if kind == ANY and isinstance(root, Attribute | DataPath):
        name = root.name if isinstance(root, Attribute) else root.text
        warnings.append(FilterWarning(
            BARE_NAME, f"{name!r} alone matches only events whose {name!r} is Boolean true;"
            f" to search for the word, use free-text search (q={name})", root.pos))
    for node in _walk(root, Binary):
        left = node.left
        if (node.op in ("=", "!=", "<>") and isinstance(left, Unary) and left.op == "NOT"
                and isinstance(left.operand, Attribute | DataPath)):
            warnings.append(FilterWarning(
                NOT_PRECEDENCE, f"NOT binds tighter than {node.op!r}: this reads"
                f" (NOT x) {node.op} y; write NOT (x {node.op} y) or x != y", left.pos))
    return tuple(warnings)


def _unknown(call: Call) -> FilterWarning | None:
    if fn.resolve(call.name, len(call.args)) is not None:
        return None
    overloads = fn.FUNCTIONS.get(call.name)
    if overloads is None:
        message = (f"{call.name} is not a CESQL function; evaluating it is always a"
                   " missingFunction error")
    else:
        arities = sorted({len(f.params) for f in overloads})
        takes = " or ".join(map(str, arities)) + (" or more" if overloads[-1].variadic else "")
        message = f"{call.name} takes {takes} argument(s), not {len(call.args)}"
    return FilterWarning(UNKNOWN_FUNCTION, message, call.pos)


def _walk(root: Node, *kinds: type) -> Iterator[Any]:
    """Nodes of the given kinds, in source order (iterative: trees may be wide)."""
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, kinds):
            yield node
        stack.extend(reversed(_children(node)))


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary | Like):
        return (node.operand,)
    if isinstance(node, Exists):
        return (node.target,)
    if isinstance(node, Logic):
        return node.operands
    if isinstance(node, Call):
        return node.args
    if isinstance(node, In):
        return (node.operand, *node.items)
    return ()
