"""Necessary conditions a store can test in SQL before a filter runs in Python.

A listing that no index serves reads a range of the log and tests each event with the
compiled filter. Most filters say something about `type`, `source` or `subject` that
every match must meet (`type = 'x'`, `subject LIKE 'db-%'`, `{"prefix": {...}}`); the
store tests that in SQL, so the events that cannot match are never decoded. The
conditions are necessary, not sufficient: the caller still tests every event it gets
back, which is also why a store may ignore them, and why SQL's looser LIKE (SQLite folds
ASCII case) is fine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from broker.filters import nodes

NARROW_ATTRIBUTES = ("type", "source", "subject")
"""Attributes a store keeps in columns of their own (always strings when present)."""


@dataclass(frozen=True, slots=True)
class Narrow:
    """`attribute` equals one of `exact` or matches one of the SQL LIKE `patterns`
    (backslash escapes `\\%`, `\\_` and `\\\\`)."""

    attribute: str
    exact: frozenset[str] = frozenset()
    patterns: frozenset[str] = frozenset()

    def union(self, other: Narrow) -> Narrow:
        return Narrow(self.attribute, self.exact | other.exact, self.patterns | other.patterns)


Narrowing = tuple[Narrow, ...]
"""Conditions that all hold for every matching event (empty: nothing is known)."""


def escape_like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern with backslash escapes."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(pattern: str) -> str:
    """A CESQL LIKE pattern (only `\\%` and `\\_` are escapes there; any other
    backslash stands for itself) as an SQL LIKE pattern with backslash escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append("\\" + pattern[i + 1])
            i += 2
            continue
        out.append("\\\\" if ch == "\\" else ch)
        i += 1
    return "".join(out)


def narrowing_of(spec: Any) -> Narrowing:
    """What a normalized filter spec requires of the narrow attributes."""
    if not isinstance(spec, dict) or len(spec) != 1:
        return ()
    ((dialect, body),) = spec.items()
    if dialect in ("exact", "prefix", "suffix") and isinstance(body, dict):
        found = []
        for attribute in NARROW_ATTRIBUTES:
            value = body.get(attribute)
            if not isinstance(value, str):
                continue
            if dialect == "exact":
                found.append(Narrow(attribute, exact=frozenset([value])))
            else:
                pattern = (escape_like(value) + "%" if dialect == "prefix"
                           else "%" + escape_like(value))
                found.append(Narrow(attribute, patterns=frozenset([pattern])))
        return tuple(found)
    if dialect == "all" and isinstance(body, list):
        return tuple(n for child in body for n in narrowing_of(child))
    if dialect == "any" and isinstance(body, list):
        return _either([narrowing_of(child) for child in body])
    if dialect == "sql" and isinstance(body, str):
        from broker.filters.parser import parse

        try:
            return _sql(parse(body))
        except Exception:  # the filter compiled already; knowing nothing is always safe
            return ()
    return ()  # not, search: nothing usable


def _either(children: list[Narrowing]) -> Narrowing:
    """Every child's conditions on one attribute, joined: one of them holds."""
    if not children:
        return ()
    for attribute in NARROW_ATTRIBUTES:
        firsts = (next((n for n in child if n.attribute == attribute), None)
                  for child in children)
        picked = [n for n in firsts if n is not None]
        if len(picked) == len(children):
            return (functools.reduce(Narrow.union, picked),)
    return ()


def _sql(node: nodes.Node) -> Narrowing:
    # AND is false when any operand is false (or errs), so each operand's conditions
    # hold; OR needs one condition from every operand. XOR and NOT give nothing.
    if isinstance(node, nodes.Logic):
        parts = [_sql(operand) for operand in node.operands]
        if node.op == "AND":
            return tuple(n for part in parts for n in part)
        return _either(parts) if node.op == "OR" else ()
    if isinstance(node, nodes.Binary) and node.op == "=":
        for left, right in ((node.left, node.right), (node.right, node.left)):
            name, value = _attribute(left), _string(right)
            if name and value is not None:
                return (Narrow(name, exact=frozenset([value])),)
        return ()
    if isinstance(node, nodes.In) and not node.negated:
        name = _attribute(node.operand)
        values = [_string(item) for item in node.items]
        if name and values and all(v is not None for v in values):
            return (Narrow(name, exact=frozenset(v for v in values if v is not None)),)
        return ()
    if isinstance(node, nodes.Like) and not node.negated:
        name = _attribute(node.operand)
        return (Narrow(name, patterns=frozenset([like_pattern(node.pattern)])),) \
            if name else ()
    return ()


def _attribute(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Attribute) and node.name in NARROW_ATTRIBUTES:
        return node.name
    return None


def _string(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Literal) and isinstance(node.value, str):
        return node.value
    return None
