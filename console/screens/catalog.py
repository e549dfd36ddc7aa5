"""The Catalog screen: every source and type the broker has seen (silent ones first)
and the chosen one's data shape; drift announcements reload it live."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Static

from console.feed import EventFeed, head_seq
from console.format import age_since
from console.messages import EventsArrived
from console.models.catalog import CatalogModel, key_of_row, row_key
from console.screens.base import ConsoleScreen
from console.widgets.columns import Column
from console.widgets.nav_table import NavTable
from console.widgets.rows import replace_rows

CHANGED_FILTER = "type = 'opsbus.catalog.changed'"
RELOAD_AFTER_S = 0.5
"""A burst of announcements reloads once, this long after the first of them."""
REFRESH_S = 15.0
"""Counts and rates change without an announcement: reload this often regardless."""


def gap_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + unit
    return f"{seconds:.1f}".removesuffix(".0") + "s"


class CatalogScreen(ConsoleScreen):
    """Sources and types with counts, rates and silence; the selected one's shape."""

    HELP_TITLE = "Catalog"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "switch_pane", "Entries/shape", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model = CatalogModel()
        self.feed: EventFeed | None = None
        self._reload_timer: Timer | None = None
        self._shape_shown: tuple[str, str] | None = None

    @property
    def ready(self) -> bool:
        return self.model.status != "loading"

    def compose_body(self) -> Iterable[Widget]:
        with Vertical():
            yield Static("CATALOG (silent first)", id="catalog-title", classes="pane-title")
            yield NavTable(id="entries", columns=(
                Column("SOURCE", flex=2, min=12), Column("TYPE", flex=2, min=12),
                Column("COUNT", 8), Column("RATE/MIN", 8), Column("GAP", 6),
                Column("LAST SEEN", 9), Column("STATE", 8)))
            yield Static("SHAPE", id="shape-title", classes="pane-title")
            yield NavTable(id="shape", columns=(
                Column("PATH", flex=1, min=16), Column("TYPES", 20), Column("PRESENCE", 9),
                Column("SEEN", 8)))

    def on_mount(self) -> None:
        for table in self.query(NavTable):
            table.fit()
        self.query_one("#entries").focus()
        self.model.observe(self._redraw)
        self.set_interval(REFRESH_S, self.reload)
        self._follow()

    @work(exclusive=True, group="catalog-feed")
    async def _follow(self) -> None:
        client = self.console.client
        after = await head_seq(client)
        self.reload()
        self.feed = EventFeed("catalog", client, self, after=after, filter=CHANGED_FILTER,
                              window_s=self.console.batch_window_s)
        await self.feed.run()

    @on(EventsArrived)
    def _announced(self, message: EventsArrived) -> None:
        try:
            if message.feed == "catalog":
                message.stop()
                self.model.mark_changed([event for _seq, event in message.events])
                if self._reload_timer is None:
                    self._reload_timer = self.set_timer(RELOAD_AFTER_S, self._reload_now)
        finally:
            message.handled.set()

    def _reload_now(self) -> None:
        self._reload_timer = None
        self.reload()

    @work(exclusive=True, group="catalog")
    async def reload(self) -> None:
        await self.model.load(self.console.client)

    def _redraw(self) -> None:
        model = self.model
        title = self.query_one("#catalog-title", Static)
        if model.status == "unavailable":
            title.update(Text(model.problem or "", style="bold yellow"))
            return
        title.update(f"CATALOG — {len(model.entries)} source/type pairs (silent first)")
        now = self.console.now()
        rows = []
        for key, entry in model.entries.items():
            if entry["silent"]:
                state = Text("SILENT", style="bold red")
            elif key in model.changed_keys:
                state = Text("CHANGED", style="bold yellow")
            else:
                state = Text("ok", style="green")
            rows.append((row_key(key), (
                key[0], key[1], str(entry["count"]), f"{entry['rate_per_s'] * 60:.2f}",
                gap_text(entry.get("usual_gap_s")), age_since(entry.get("last_seen"), now),
                state)))
        replace_rows(self.query_one("#entries", DataTable), rows)
        table = self.query_one("#shape", DataTable)
        if self._shape_shown != model.shape_of:
            table.clear()  # another entry's shape: start at the top
            self._shape_shown = model.shape_of
        replace_rows(table, [
            (path, (path, "|".join(field.get("types", [])),
                    "required" if field.get("required") else Text("optional", style="dim"),
                    str(field.get("seen", ""))))
            for path, field in model.shape.items()])
        shape_title = self.query_one("#shape-title", Static)
        if model.shape_of is None:
            shape_title.update("SHAPE")
        else:
            shape_title.update(f"SHAPE of {model.shape_of[1]} from {model.shape_of[0]} —"
                               f" {len(model.shape)} paths")

    @on(DataTable.RowHighlighted, "#entries")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a highlight from before the table was rebuilt
        row = event.row_key.value
        if row is not None and key_of_row(str(row)) != self.model.selected:
            self.model.select(key_of_row(str(row)))
            self._reload_shape()

    @work(exclusive=True, group="catalog-shape")
    async def _reload_shape(self) -> None:
        await self.model.load_shape(self.console.client)

    def action_switch_pane(self) -> None:
        entries, shape = self.query_one("#entries"), self.query_one("#shape")
        (entries if shape.has_focus else shape).focus()

    def action_reload(self) -> None:
        self.reload()
