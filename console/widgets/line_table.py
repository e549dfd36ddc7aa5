"""A keyed table drawn with the line API: each row is rendered once into segments and
kept until its cells change, and only the visible lines are drawn.

DataTable drops every rendered cell whenever one cell changes and whenever the styles
are refreshed (each time its screen comes back), so a list that changes several times a
second, or is shown again after another view, re-renders all of its visible cells. Here
a screen hands over the whole list with `set_rows`; rows whose cells are unchanged keep
their rendered lines, and styles (zebra stripes, cursor, focus) are laid over those lines
when they are drawn. It looks and moves like the console's DataTables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.widgets.columns import Column, fit_columns

CELL_PADDING = 1
"""Blank cells either side of each cell's content (as DataTable)."""

Cells = Sequence[Any]
"""A row's cells in column order: `str` (plain text, not markup) or rich `Text`."""


@dataclass
class _Row:
    cells: Cells
    lines: list[list[list[Segment]]] | None = None
    """The row rendered without row styles: per line, each cell's segments; None until
    it is first drawn (or after its cells or the columns changed)."""


class RowView(Mapping[str, Cells]):
    """The table's rows by key, in the table's order (read-only)."""

    def __init__(self, table: LineTable) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Cells:
        return self._table._rows[key].cells

    def __iter__(self) -> Iterator[str]:
        return iter(self._table._keys)

    def __len__(self) -> int:
        return len(self._table._keys)


class LineTable(ScrollView, can_focus=True):
    """Rows with a key each, a header, a row cursor and zebra stripes; j/k, g/G,
    Home/End, page keys; enter or a click on the cursor row selects it."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "line-table--header", "line-table--cursor", "line-table--even-row",
        "line-table--odd-row",
    }
    # The same look as Textual's DataTable (its component styles, renamed).
    DEFAULT_CSS = """
    LineTable {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        &:focus {
            background-tint: $foreground 5%;
            & > .line-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .line-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark {
            & > .line-table--even-row {
                background: $surface-darken-1 40%;
            }
        }
        & > .line-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .line-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .line-table--odd-row {
        }
        & > .line-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .line-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Select", show=False),
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First row", show=False),
        Binding("end,G", "last", "Last row", show=False),
    ]

    @dataclass
    class Highlighted(Message):
        """The cursor is on another row (moved, or the rows under it changed)."""

        table: LineTable
        cursor_row: int
        key: str

        @property
        def control(self) -> LineTable:
            return self.table

    @dataclass
    class Selected(Message):
        """Enter, or a click on the cursor row."""

        table: LineTable
        cursor_row: int
        key: str

        @property
        def control(self) -> LineTable:
            return self.table

    def __init__(self, *, columns: tuple[Column, ...] = (), id: str | None = None,
                 zebra_stripes: bool = True) -> None:
        super().__init__(id=id)
        self.spec = columns
        self.widths: dict[str, int] = {}
        """Content width of each column by key (without the padding)."""
        self.zebra_stripes = zebra_stripes
        self.row_height = 1
        self.cursor_row = 0
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._rows: dict[str, _Row] = {}
        self._header: list[list[list[Segment]]] | None = None
        self._highlighted: str | None = None
        self.rows = RowView(self)
        """The rows by key, in order: `key in table.rows`, `table.rows[key]`."""

    # -- columns and rows -----------------------------------------------------------------
    def fit(self, columns: tuple[Column, ...] | None = None) -> bool:
        """Lay the columns out for the current width; True when they changed (the rows
        must then be given again, their cells being for other columns)."""
        spec = columns if columns is not None else self.spec
        width = self.scrollable_content_region.width or self.size.width
        if width <= 0:
            width = 80
        widths = fit_columns(spec, width, padding=2 * CELL_PADDING)
        if spec == self.spec and widths == self.widths:
            return False
        self.spec, self.widths = spec, widths
        self._header = None
        for row in self._rows.values():
            row.lines = None
        self.refresh()
        return True

    @property
    def row_count(self) -> int:
        return len(self._keys)

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, None when the table is empty."""
        return self._keys[self.cursor_row] if self._keys else None

    def get_row(self, key: str) -> list[Any]:
        return list(self._rows[key].cells)

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def set_rows(self, rows: Sequence[tuple[str, Cells]], height: int = 1) -> None:
        """Show `rows` (key, cells) in this order. A row whose cells are equal to what it
        showed keeps its rendered lines; the cursor stays on its key (else at its index),
        and a row that stays on screen stays where it was."""
        keep, scroll_y = self.cursor_key, self.scroll_y
        old_row = self.cursor_row
        if height != self.row_height:
            self.row_height = height
            for row in self._rows.values():
                row.lines = None
        fresh: dict[str, _Row] = {}
        for key, cells in rows:
            known = self._rows.get(key)
            if known is not None and known.lines is not None and _same(known.cells, cells):
                fresh[key] = known
            else:
                fresh[key] = _Row(cells)
        self._rows = fresh
        self._keys = [key for key, _ in rows]
        self._index = {key: n for n, key in enumerate(self._keys)}
        if keep in self._index:
            self.cursor_row = self._index[keep]
        else:
            self.cursor_row = max(0, min(old_row, len(self._keys) - 1))
        self._resized()
        if self.cursor_row != old_row:
            # The reader's row keeps its place on screen while rows come and go above it.
            self.scroll_to(y=max(0, scroll_y + (self.cursor_row - old_row) * self.row_height),
                           animate=False, immediate=True)
        self._show_cursor()
        self.refresh()
        self._announce()

    def clear(self) -> None:
        self.set_rows([])

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on row `row` (clamped) and scroll it into view."""
        if not self._keys:
            return
        row = max(0, min(row, len(self._keys) - 1))
        if row != self.cursor_row:
            self.cursor_row = row
            self.refresh()
        self._show_cursor()
        self._announce()

    def _announce(self) -> None:
        key = self.cursor_key
        if key != self._highlighted:
            self._highlighted = key
            if key is not None:
                self.post_message(self.Highlighted(self, self.cursor_row, key))

    # -- geometry -------------------------------------------------------------------------
    def _resized(self) -> None:
        width = sum(self.widths.values()) + 2 * CELL_PADDING * len(self.widths)
        self.virtual_size = Size(width, 1 + len(self._keys) * self.row_height)

    def _show_cursor(self) -> None:
        """Scroll just enough to keep the cursor row in view below the header."""
        visible = max(self.row_height, self.size.height - 1)
        top, bottom = self.cursor_row * self.row_height, (self.cursor_row + 1) * self.row_height
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False, immediate=True)
        elif bottom > self.scroll_y + visible:
            self.scroll_to(y=bottom - visible, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._resized()
        self._show_cursor()

    # -- rendering --------------------------------------------------------------------------
    def _render_cells(self, cells: Cells, height: int) -> list[list[list[Segment]]]:
        """Each cell's segments (no row style yet), line by line: `height` lines."""
        console = self.app.console
        lines: list[list[list[Segment]]] = [[] for _ in range(height)]
        for column, cell in zip(self.spec, cells, strict=False):
            width = self.widths.get(column.key, 0) + 2 * CELL_PADDING
            text = cell if isinstance(cell, Text) else Text(str(cell), end="")
            options = self.app.console_options.update_dimensions(width, height)
            if height == 1:
                options = options.update(no_wrap=True)
            rendered = console.render_lines(Padding(text, (0, CELL_PADDING)), options)
            for n in range(height):
                lines[n].append(rendered[n])
        return lines

    def _row_lines(self, key: str) -> list[list[list[Segment]]]:
        row = self._rows[key]
        if row.lines is None:
            row.lines = self._render_cells(row.cells, self.row_height)
        return row.lines

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("line-table--header")
            if self._header is None:
                self._header = self._render_cells([Text(c.label, end="") for c in self.spec],
                                                  1)
            return self._strip(self._header[0], -1, header, None, width, base)
        offset = int(self.scroll_y) + y - 1
        index, line = divmod(offset, self.row_height)
        if index >= len(self._keys):
            return Strip.blank(width, base)
        if self.zebra_stripes:
            row_style = self.get_component_rich_style(
                "line-table--odd-row" if index % 2 else "line-table--even-row")
        else:
            row_style = base
        cursor = (self.get_component_rich_style("line-table--cursor")
                  if index == self.cursor_row else None)
        return self._strip(self._row_lines(self._keys[index])[line], index, row_style, cursor,
                           width, base)

    def _strip(self, cells: list[list[Segment]], index: int, row_style: Style,
               cursor: Style | None, width: int, base: Style) -> Strip:
        """One line of a row with its styles laid over, as DataTable draws it (the row
        and column in each cell's style meta)."""
        segments: list[Segment] = []
        # The cursor's text colour wins over the cells' own; their backgrounds show (a
        # critical priority stays red under the cursor), as in DataTable.
        post = Style.from_color(cursor.color) if cursor else Style()
        extra = cursor or Style()
        for column, cell in enumerate(cells):
            pre = row_style + Style.from_meta({"row": index, "column": column}) + extra
            segments.extend(Segment.apply_style(cell, pre, post))
        used = sum(segment.cell_length for segment in segments)
        if used < width:
            segments.append(Segment(" " * (width - used), row_style + extra + Style.from_meta(
                {"row": index, "column": 0, "out_of_bounds": True})))
        return Strip(segments).crop(0, width).adjust_cell_length(width, base).simplify()

    # -- keys and mouse ---------------------------------------------------------------------
    def action_cursor(self, delta: int) -> None:
        self.move_cursor(row=self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        rows = max(1, (self.size.height - 1) // self.row_height)
        self.move_cursor(row=self.cursor_row + direction * rows)

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._keys) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, self.cursor_row, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = (int(self.scroll_y) + event.y - 1) // self.row_height
        if 0 <= index < len(self._keys):
            again = index == self.cursor_row
            self.move_cursor(row=index)
            if again:
                self.action_select()


def _signature(cell: Any) -> Any:
    """What a cell looks like: for Text, its text, spans, base style and overflow (Text's
    own equality leaves the base style out)."""
    if isinstance(cell, Text):
        return (cell.plain, tuple(cell.spans), str(cell.style), cell.no_wrap,
                cell.overflow, cell.justify, cell.end)
    return str(cell)


def _same(before: Cells, after: Cells) -> bool:
    return len(before) == len(after) and all(
        _signature(a) == _signature(b) for a, b in zip(before, after, strict=True))
