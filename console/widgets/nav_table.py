"""A DataTable that moves like every list in the console: j/k, g/G, Home/End."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from console.widgets.columns import Column, fit_columns


class NavTable(DataTable[Any]):
    """Rows with vim and Home/End keys; columns sized to the table's width."""

    DEFAULT_CSS = "NavTable { overflow-x: hidden; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row", show=False),
    ]

    def __init__(self, *, columns: tuple[Column, ...] = (), id: str | None = None,
                 cursor_type: Any = "row", zebra_stripes: bool = True,
                 show_header: bool = True) -> None:
        super().__init__(id=id, cursor_type=cursor_type, zebra_stripes=zebra_stripes,
                         show_header=show_header)
        self.spec = columns
        self.fitted_width = 0
        self.widths: dict[str, int] = {}

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def fit(self, columns: tuple[Column, ...] | None = None) -> bool:
        """Lay the columns out for the current width; True when they changed (the rows
        are then gone and the caller adds them again)."""
        spec = columns if columns is not None else self.spec
        width = self.scrollable_content_region.width or self.size.width
        if width <= 0:
            width = 80
        widths = fit_columns(spec, width, padding=2 * self.cell_padding)
        if spec == self.spec and widths == self.widths and self.columns:
            return False
        self.spec, self.widths, self.fitted_width = spec, widths, width
        self.clear(columns=True)
        for column in spec:
            self.add_column(column.label, width=widths[column.key], key=column.key)
        return True
