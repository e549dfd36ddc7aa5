"""`replace_rows` keeps the reader's place: cursor on its key, the row where it was on
screen, whether rows are appended, inserted above it, or the cursor's row goes away."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from console.widgets.rows import RowSpec, cursor_key, replace_rows


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_column("N", key="n")


def rows(numbers: range | list[int]) -> list[RowSpec]:
    return [(str(n), (f"row {n}",)) for n in numbers]


async def test_cursor_and_scroll_survive_reloads() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table: DataTable[Any] = app.query_one(DataTable)
        replace_rows(table, rows(range(100)))
        await pilot.pause()
        table.move_cursor(row=50)
        await pilot.pause()
        on_screen = table.cursor_row - table.scroll_y
        # Appended rows and changed cells: nothing moves.
        replace_rows(table, [(k, (f"{c[0]}!",)) for k, c in rows(range(110))])
        await pilot.pause()
        assert (cursor_key(table), table.cursor_row) == ("50", 50)
        assert table.get_row("50") == ["row 50!"]
        # Three rows above the cursor: the cursor follows its row, the view scrolls along.
        replace_rows(table, rows([-3, -2, -1, *range(110)]))
        await pilot.pause()
        assert (cursor_key(table), table.cursor_row) == ("50", 53)
        assert table.cursor_row - table.scroll_y == on_screen
        # The cursor's row goes away: the cursor stays at its index.
        replace_rows(table, rows([n for n in range(-3, 110) if n != 50]))
        await pilot.pause()
        assert (cursor_key(table), table.cursor_row) == ("51", 53)
