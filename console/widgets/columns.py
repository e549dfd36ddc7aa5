"""Fixed-width DataTable columns: rows arrive after layout and must not reflow the table
(auto-sized columns also measure late at times, which makes screenshots unstable)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable


def add_columns(table: DataTable[Any], *spec: tuple[str, int]) -> None:
    """Add (label, width) columns."""
    for label, width in spec:
        table.add_column(label, width=width, key=label.lower())
