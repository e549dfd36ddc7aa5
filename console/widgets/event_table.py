"""A fast, capped table of events drawn with the line API (only visible rows render)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from broker.summary import data_summary
from console.format import short_time
from console.widgets.pass_styled import PassStyledView

WINDOW = 5_000
"""Rows kept in memory; older ones are dropped and reloaded from the broker on demand."""
LINES_CACHED = 500
"""Drawn lines kept (a few screens' worth)."""


class EventRow:
    """One event as the table shows it. Its cells are worked out the first time the row
    is drawn (at thousands of events a second most rows never are) and the event is let
    go then; until that, the window holds the event itself."""

    __slots__ = ("_cells", "_event", "seq", "type")

    def __init__(self, seq: int, event: dict[str, Any]) -> None:
        self.seq = seq
        self.type = str(event.get("type", ""))
        self._event: dict[str, Any] | None = event
        self._cells: tuple[str, ...] | None = None

    @classmethod
    def of(cls, seq: int, event: dict[str, Any]) -> EventRow:
        return cls(seq, event)

    def cells(self) -> tuple[str, ...]:
        """SEQ, TIME, TYPE, SOURCE, SUBJECT, SUMMARY."""
        if self._cells is None:
            event = self._event or {}
            self._cells = (str(self.seq), short_time(event.get("time")), self.type,
                           str(event.get("source", "")), str(event.get("subject") or ""),
                           data_summary(event, 120))
            self._event = None
        return self._cells


COLUMNS: tuple[tuple[str, int], ...] = (
    ("SEQ", 8), ("TIME", 14), ("TYPE", 30), ("SOURCE", 28), ("SUBJECT", 20), ("SUMMARY", 0),
)
"""Title and width at full size; 0 takes the rest of the line."""
SUMMARY_SHARE = 0.35
"""At least this share of the line goes to SUMMARY; TYPE, SOURCE and SUBJECT shrink."""
NARROW = 120
"""Below this width TIME shows the time of day only."""


def layout(width: int) -> tuple[int, ...]:
    """Column widths for a line `width` cells wide (each column but the last is
    followed by one space)."""
    seq = COLUMNS[0][1]
    when = COLUMNS[1][1] if width >= NARROW else 8
    rest = max(0, width - seq - when - 5)
    middle = [w for _, w in COLUMNS[2:5]]
    summary = max(int(rest * SUMMARY_SHARE), rest - sum(middle))
    room = rest - summary
    scaled = [room * w // sum(middle) for w in middle]
    return (seq, when, *scaled, summary)


BAD_WORDS = ("fail", "firing", "crashloop", "error", "dead", "denied", "expiring", "high")
GOOD_WORDS = ("succeeded", "resolved", "approved", "recovered")


def fit(text: str, width: int) -> str:
    """Exactly `width` cells: padded, or cut with an ellipsis."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + "…"


class EventTable(PassStyledView, can_focus=True):
    """Events in seq order, newest last, with a cursor row and follow mode."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "event-table--header", "event-table--cursor", "event-table--seq",
        "event-table--bad", "event-table--good", "event-table--meta",
    }
    DEFAULT_CSS = """
    EventTable { height: 1fr; background: $surface; overflow-x: hidden; }
    EventTable > .event-table--header { text-style: bold; background: $panel; color: $text; }
    EventTable > .event-table--cursor { background: $accent 40%; }
    EventTable:focus > .event-table--cursor { background: $accent; color: $text; }
    EventTable > .event-table--seq { color: $text-muted; }
    EventTable > .event-table--bad { color: $error; }
    EventTable > .event-table--good { color: $success; }
    EventTable > .event-table--meta { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "top", "Oldest", show=False),
        Binding("end,G", "bottom", "Newest", show=False),
        Binding("enter", "select", "Detail"),
    ]

    @dataclass
    class Selected(Message):
        """Enter was pressed on a row."""

        seq: int

    @dataclass
    class OlderWanted(Message):
        """The cursor went above the oldest row held: load the events before `before`."""

        before: int

    @dataclass
    class FollowChanged(Message):
        """Follow mode was switched by moving the cursor."""

        following: bool

    def __init__(self, *, window: int = WINDOW, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: deque[EventRow] = deque(maxlen=window)
        self.window = window
        self.cursor = 0
        self.following = True
        self._empty_text = ""
        self._widths: tuple[int, tuple[int, ...]] = (0, ())
        self._lines: LRUCache[tuple[Any, ...], Strip] = LRUCache(LINES_CACHED)

    # -- data ---------------------------------------------------------------------------
    @property
    def empty_text(self) -> str:
        """Shown when there are no rows (what was asked for, why nothing matches)."""
        return self._empty_text

    @empty_text.setter
    def empty_text(self, text: str) -> None:
        self._empty_text = text
        self.refresh()

    @property
    def last_seq(self) -> int:
        return self.rows[-1].seq if self.rows else 0

    @property
    def first_seq(self) -> int:
        return self.rows[0].seq if self.rows else 0

    def append(self, events: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Add newer events (older or known seqs are skipped); the number added."""
        last = self.last_seq
        new = [EventRow.of(seq, ev) for seq, ev in events if seq > last]
        if not new:
            return 0
        dropped = max(0, len(self.rows) + len(new) - self.window)
        self.rows.extend(new)
        self.cursor = len(self.rows) - 1 if self.following else max(0, self.cursor - dropped)
        self._resized()
        return len(new)

    def prepend(self, events: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Add older events (ascending or not); newest rows drop if the window is full."""
        first = self.first_seq or (1 << 62)
        older = sorted((EventRow.of(s, e) for s, e in events if s < first), key=lambda r: r.seq)
        room = self.window - len(self.rows)
        if len(older) > room:
            self.following = False  # the newest rows are about to leave the window
        self.rows.extendleft(reversed(older))
        self.cursor = min(self.cursor + len(older), len(self.rows) - 1)
        self._resized()
        self._show_cursor()
        return len(older)

    def clear(self) -> None:
        self.rows.clear()
        self.cursor = 0
        self._resized()

    def index_of(self, seq: int) -> int | None:
        """Row index of a seq held in the window (binary search: seqs ascend)."""
        lo, hi = 0, len(self.rows) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            value = self.rows[mid].seq
            if value == seq:
                return mid
            lo, hi = (mid + 1, hi) if value < seq else (lo, mid - 1)
        return None

    def move_to(self, index: int) -> None:
        self.cursor = max(0, min(index, len(self.rows) - 1))
        self._set_following(self.cursor == len(self.rows) - 1 and self.following)
        self._show_cursor()
        self.refresh()

    @property
    def selected_seq(self) -> int | None:
        return self.rows[self.cursor].seq if self.rows else None

    @property
    def at_rest(self) -> bool:
        """Laid out and, when following, scrolled to the newest row: what it shows is
        what its rows and mode say (the end is reached a refresh after rows arrive)."""
        return self.size.height > 0 and (not self.following
                                         or round(self.scroll_y) >= self.max_scroll_y)

    def set_following(self, following: bool) -> None:
        self.following = following
        if following and self.rows:
            self.cursor = len(self.rows) - 1
            self._show_cursor()
        self.refresh()

    # -- geometry and rendering -----------------------------------------------------------
    def _resized(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self.rows) + 1)
        if self.following:
            self.scroll_end(animate=False, x_axis=False)
            # Once more after the new height is laid out: a scroll asked for before that
            # stops at the old end, leaving the newest rows below the view.
            self.call_after_refresh(self._follow_end)
        self.refresh()

    def _follow_end(self) -> None:
        if self.following:
            self.scroll_end(animate=False, x_axis=False, immediate=True)

    def _show_cursor(self) -> None:
        """Scroll just enough to keep the cursor row visible below the header."""
        visible = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def render_line(self, y: int) -> Strip:
        if not self._styles:
            self._take_styles()
        width = self.scrollable_content_region.width
        if y == 0:  # the header stays put while rows scroll under it
            header = self._styles["event-table--header"]
            return self._strip([title for title, _ in COLUMNS], width, header, header)
        index = int(self.scroll_y) + y - 1
        base = self._base
        if index >= len(self.rows):
            if not self.rows and y == 2 and self.empty_text:
                muted = self._styles["event-table--meta"]
                return Strip([Segment(fit("  " + self.empty_text, width), base + muted)])
            return Strip.blank(width, base)
        row = self.rows[index]
        cursor = index == self.cursor
        # A row looks the same wherever it is: while following, each batch scrolls the
        # table and only the new rows are drawn.
        key = (row, cursor, width, self._styles_key)
        strip = self._lines.get(key)
        if strip is None:
            if cursor:
                style = base + self._styles["event-table--cursor"]
                strip = self._strip(list(row.cells()), width, style, style)
            else:
                strip = self._strip(list(row.cells()), width, base,
                                    self._type_style(row.type, base))
            self._lines[key] = strip
        return strip

    def _type_style(self, kind: str, base: Style) -> Style:
        lowered = kind.lower()
        if lowered.startswith("opsbus."):
            name = "event-table--meta"
        elif any(w in lowered for w in BAD_WORDS):
            name = "event-table--bad"
        elif any(w in lowered for w in GOOD_WORDS):
            name = "event-table--good"
        else:
            return base
        return base + self._styles[name]

    def _strip(self, cells: list[str], width: int, style: Style, type_style: Style) -> Strip:
        widths = self._layout(width)
        segments: list[Segment] = []
        seq_style = style if type_style is style else (
            style + self._styles["event-table--seq"])
        last = len(widths) - 1
        for n, (w, text) in enumerate(zip(widths, cells, strict=True)):
            cell_style = seq_style if n == 0 else type_style if n == 2 else style
            if n == 0:
                segments.append(Segment(text.rjust(w - 1)[: w - 1] + "  ", cell_style))
                continue
            if n == 1 and w < len(text):
                text = text[-w:]  # the time of day when narrow
            segments.append(Segment(fit(text, w) + ("" if n == last else " "), cell_style))
        return Strip(segments).adjust_cell_length(width, style)

    def _layout(self, width: int) -> tuple[int, ...]:
        if self._widths[0] != width:
            self._widths = (width, layout(width))
        return self._widths[1]

    # -- keys -------------------------------------------------------------------------
    def _set_following(self, following: bool) -> None:
        if following != self.following:
            self.following = following
            self.post_message(self.FollowChanged(following))

    def action_cursor(self, delta: int) -> None:
        if not self.rows:
            return
        if delta < 0 and self.cursor == 0:
            self.post_message(self.OlderWanted(self.first_seq))
            return
        self.cursor = max(0, min(self.cursor + delta, len(self.rows) - 1))
        self._set_following(self.cursor == len(self.rows) - 1 and delta > 0)
        self._show_cursor()
        self.refresh()

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_top(self) -> None:
        self.move_to(0)
        self._set_following(False)

    def action_bottom(self) -> None:
        self._set_following(True)
        self.set_following(True)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self.rows[self.cursor].seq))

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < len(self.rows):
            self._set_following(False)
            self.move_to(index)
            if event.chain == 2:  # double click opens the detail
                self.action_select()

    def on_resize(self) -> None:
        self._resized()
