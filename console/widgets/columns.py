"""Table columns sized to the width at hand: fixed ones keep their width, flexible ones
share the rest (rows arrive after layout and must not reflow the table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.widgets import DataTable

SCROLLBAR = 2
"""Cells kept free for the vertical scrollbar, so no horizontal one appears."""


@dataclass(frozen=True)
class Column:
    """A column: a fixed `width`, or a share (`flex`) of what is left, at least `min`."""

    label: str
    width: int = 0
    flex: int = 0
    min: int = 4

    @property
    def key(self) -> str:
        return self.label.lower() or "mark"


def fit_columns(columns: tuple[Column, ...], total: int, padding: int = 2) -> dict[str, int]:
    """Content width of each column for a table `total` cells wide."""
    fixed = sum(c.width + padding for c in columns if not c.flex)
    flexible = [c for c in columns if c.flex]
    room = total - SCROLLBAR - fixed - padding * len(flexible)
    shares = sum(c.flex for c in flexible) or 1
    widths = {c.key: c.width for c in columns if not c.flex}
    for column in flexible:
        widths[column.key] = max(column.min, room * column.flex // shares)
    return widths


def add_columns(table: DataTable[Any], *spec: tuple[str, int]) -> None:
    """Add (label, width) columns."""
    for label, width in spec:
        table.add_column(label, width=width, key=label.lower())
