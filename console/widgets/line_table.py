"""A keyed table drawn with the line API: each cell is rendered once into segments and
kept until it changes, and only the visible lines are drawn.

DataTable drops every rendered cell whenever one cell changes and whenever the styles
are refreshed (each time its screen comes back), so a list that changes several times a
second, or is shown again after another view, re-renders all of its visible cells. Here
a screen hands over the whole list with `set_rows`; cells that are unchanged keep their
rendered segments, styles (zebra stripes, cursor, focus) are laid over them when a line
is drawn, and drawn lines are kept until their row, place or styles change. It looks and
moves like the console's DataTables."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from console.widgets.columns import Column, fit_columns
from console.widgets.pass_styled import PassStyledView

CELL_PADDING = 1
"""Blank cells either side of each cell's content (as DataTable)."""
LINES_CACHED = 1000
"""Drawn lines kept (a few screens' worth)."""

Cells = Sequence[Any]
"""A row's cells in column order: `str` (plain text, not markup) or rich `Text`."""


CellLines = list[list[Segment]]
"""One cell rendered without row styles: a list of segments per line."""


class _Row:
    """A row's cells and what is rendered of them (None: not rendered yet)."""

    __slots__ = ("cells", "rendered", "version")
    _versions = itertools.count()

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.rendered: list[CellLines | None] = [None] * len(cells)
        self.version = next(self._versions)
        """Changes with the cells: part of the key of the row's drawn lines."""

    def update(self, cells: Cells) -> bool:
        """Take new cells; only those that changed are rendered again. True if any did."""
        if len(cells) != len(self.cells):
            self.cells, self.rendered = cells, [None] * len(cells)
        else:
            same = [_signature(a) == _signature(b) for a, b in zip(self.cells, cells,
                                                                   strict=True)]
            if all(same):
                return False
            self.cells = cells
            self.rendered = [r if keep else None
                             for r, keep in zip(self.rendered, same, strict=True)]
        self.version = next(self._versions)
        return True

    def forget(self) -> None:
        """The columns or the row height changed: render every cell again."""
        self.rendered = [None] * len(self.cells)
        self.version = next(self._versions)


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


class LineTable(PassStyledView, can_focus=True):
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
    class RowMessage(Message):
        """About the row under the cursor."""

        table: LineTable
        cursor_row: int
        key: str

        @property
        def control(self) -> LineTable:
            return self.table

    class Highlighted(RowMessage):
        """The cursor is on another row (moved, or the rows under it changed)."""

    class Selected(RowMessage):
        """Enter, or a click on the cursor row."""

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
        self._header: list[CellLines] | None = None
        self._highlighted: str | None = None
        self._lines: LRUCache[tuple[Any, ...], Strip] = LRUCache(LINES_CACHED)
        self._cell_styles: LRUCache[tuple[Any, ...], Style] = LRUCache(LINES_CACHED * 4)
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
            row.forget()
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
        """Show `rows` (key, cells) in this order. Cells equal to what they showed keep
        their rendered segments, and a row that neither changed nor moved is not drawn
        again; the cursor stays on its key (else at its index), and a row that stays on
        screen stays where it was."""
        keep, scroll_y = self.cursor_key, self.scroll_y
        old_keys, old_row = self._keys, self.cursor_row
        redraw = height != self.row_height
        if redraw:
            self.row_height = height
        fresh: dict[str, _Row] = {}
        changed: list[int] = []
        for n, (key, cells) in enumerate(rows):
            known = self._rows.get(key)
            if known is None:
                fresh[key] = _Row(cells)
                changed.append(n)
                continue
            if redraw:
                known.forget()
            if known.update(cells):
                changed.append(n)
            fresh[key] = known
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
        if redraw or self.scroll_y != scroll_y:
            self.refresh()
        else:
            # Only the lines that look different: changed rows, rows that moved (from
            # the first key out of place on), and the cursor's old and new row.
            moved = next((n for n, (old, new) in enumerate(zip(old_keys, self._keys, strict=False))
                          if old != new), min(len(old_keys), len(self._keys)))
            end = max(len(old_keys), len(self._keys))
            if moved < end:
                self._refresh_rows(moved, end - moved)
            for n in changed:
                if n < moved:
                    self._refresh_rows(n)
            if self.cursor_row != old_row or keep != self.cursor_key:
                self._refresh_rows(old_row)
                self._refresh_rows(self.cursor_row)
        self._announce()

    def _refresh_rows(self, index: int, count: int = 1) -> None:
        self.refresh_lines(1 + index * self.row_height, count * self.row_height)

    def clear(self) -> None:
        self.set_rows([])

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on row `row` (clamped) and scroll it into view."""
        if not self._keys:
            return
        row = max(0, min(row, len(self._keys) - 1))
        if row != self.cursor_row:
            self._refresh_rows(self.cursor_row)
            self.cursor_row = row
            self._refresh_rows(row)
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
    def _render_cell(self, column: int, cell: Any, height: int) -> CellLines:
        """One cell's segments (no row style yet), `height` lines, as DataTable renders
        it: padded, cut to its column (plain strings are not markup)."""
        width = self.widths.get(self.spec[column].key, 0) + 2 * CELL_PADDING
        text = cell if isinstance(cell, Text) else Text(str(cell), end="")
        options = self.app.console_options.update_dimensions(width, height)
        if height == 1:
            options = options.update(no_wrap=True)
        return self.app.console.render_lines(Padding(text, (0, CELL_PADDING)), options)

    def _row_line(self, row: _Row, line: int) -> list[list[Segment]]:
        """Line `line` of a row: each cell's segments (rendering the cells not yet done)."""
        segments: list[list[Segment]] = []
        for n, cell in enumerate(row.cells[: len(self.spec)]):
            cell_lines = row.rendered[n]
            if cell_lines is None:
                cell_lines = row.rendered[n] = self._render_cell(n, cell, self.row_height)
            segments.append(cell_lines[line])
        return segments

    def render_line(self, y: int) -> Strip:
        if not self._styles:
            self._take_styles()
        width = self.size.width
        base = self._base
        if y == 0:
            header = self._styles["line-table--header"]
            if self._header is None:
                self._header = [self._render_cell(n, Text(c.label, end=""), 1)
                                for n, c in enumerate(self.spec)]
            return self._strip([cell[0] for cell in self._header], -1, header, None, width,
                               base)
        offset = int(self.scroll_y) + y - 1
        index, line = divmod(offset, self.row_height)
        if index >= len(self._keys):
            return Strip.blank(width, base)
        key = self._keys[index]
        row = self._rows[key]
        cursor = index == self.cursor_row
        cache_key = (key, line, index, row.version, cursor, width, self._styles_key)
        strip = self._lines.get(cache_key)
        if strip is None:
            if self.zebra_stripes:
                row_style = self._styles[
                    "line-table--odd-row" if index % 2 else "line-table--even-row"]
            else:
                row_style = base
            strip = self._strip(self._row_line(row, line), index, row_style,
                                self._styles["line-table--cursor"] if cursor else None,
                                width, base)
            self._lines[cache_key] = strip
        return strip

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
            segments.extend(Segment.apply_style(
                cell, self._cell_style(row_style, extra, index, column), post))
        used = sum(segment.cell_length for segment in segments)
        if used < width:
            segments.append(Segment(" " * (width - used), row_style + extra + Style.from_meta(
                {"row": index, "column": 0, "out_of_bounds": True})))
        return Strip(segments).crop(0, width).adjust_cell_length(width, base).simplify()

    def _cell_style(self, row_style: Style, extra: Style, index: int, column: int) -> Style:
        """The style under a cell's own: the row's, the cursor's, and the cell's place as
        meta (kept: building a meta style is slow)."""
        key = (row_style, extra, index, column)
        style = self._cell_styles.get(key)
        if style is None:
            style = row_style + Style.from_meta({"row": index, "column": column}) + extra
            self._cell_styles[key] = style
        return style

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

