"""Refill a DataTable from fresh data without losing the reader's place in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable

RowSpec = tuple[str, Sequence[Any]]
"""(row key, cells) in column order."""


def cursor_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor, None when the table is empty."""
    if not table.row_count:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    return None if key is None else str(key)


def replace_rows(table: DataTable[Any], rows: Sequence[RowSpec], height: int | None = 1
                 ) -> None:
    """Show `rows` instead of the table's rows, keeping the cursor on the same key.

    When the table's keys are a prefix of the new ones (same rows, maybe more at the
    end) cells are updated in place and the rest appended: nothing moves. Otherwise the
    table is rebuilt, the cursor put back on its key (or the row at its old index when
    that row went away) and the view scrolled by as many rows as the cursor moved, so
    the row stays where the reader had it on screen. `height=None` sizes each row to
    its content (wrapped notes)."""
    old_keys = [key.value for key in table.rows]
    new_keys = [key for key, _ in rows]
    if new_keys[:len(old_keys)] == old_keys:
        columns = list(table.columns)
        for key, cells in rows[:len(old_keys)]:
            for column, value in zip(columns, cells, strict=True):
                table.update_cell(key, column, value)
        for key, cells in rows[len(old_keys):]:
            table.add_row(*cells, key=key, height=height)
        return
    keep, old_row, scroll_y = cursor_key(table), table.cursor_row, table.scroll_y
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key, height=height)
    if not rows:
        return
    row = new_keys.index(keep) if keep in new_keys else min(old_row, len(rows) - 1)
    table.move_cursor(row=row, animate=False, scroll=False)
    # The new height is known only after the next refresh; scrolling earlier is clamped.
    table.call_after_refresh(table.scroll_to, y=max(0, scroll_y + row - old_row),
                             animate=False)
