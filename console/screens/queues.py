"""The Queues screen, the on-call home: every queue's urgent items on top, sortable,
markable for bulk work. It renders the app's QueuesModel and holds no state of its own."""

from __future__ import annotations

from collections.abc import Iterable
from time import monotonic
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Input, Static

from broker.errors import OpsbusError
from console.format import age, age_since
from console.models.items import Item, is_snoozed
from console.models.queues import ALL_QUEUES, VIEWS, QueuesModel
from console.screens.item_actions import ITEM_BINDINGS, ItemActionsScreen
from console.widgets.columns import Column
from console.widgets.line_table import LineTable

STATE_STYLE = {"open": "bold yellow", "claimed": "bold cyan", "resolved": "green",
               "snoozed": "dim"}
PRIORITY_STYLE = {"critical": "bold white on red", "high": "bold red", "error": "red",
                  "warning": "yellow"}
FIELDS_PER_PASS = 60
"""Latest events fetched per pass for the key fields (the top of the list first)."""
WIDE = 150
"""From this width of the items pane on, key fields get their own column; below it they
are the second line of each row."""
NARROW = 90
"""Below this width of the items pane the owner moves to the second line."""
REDRAW_S = 0.25
"""Least time between two redraws caused by item changes (keys redraw at once)."""
NARROW_SCREEN = 130
"""Below this terminal width the queue list shows names and open counts only."""

QUEUE_COLUMNS = (Column("QUEUE", flex=1, min=8), Column("OPEN", 4), Column("CLM", 3),
                 Column("OLDEST", 6))
NARROW_QUEUE_COLUMNS = (Column("QUEUE", flex=1, min=8), Column("OPEN", 4))


def item_columns(all_queues: bool, width: int) -> tuple[Column, ...]:
    """The item list's columns for its width: from WIDE on the key fields get a column
    of their own; below NARROW the owner joins them on each row's second line."""
    narrow = width < NARROW
    columns = [Column("", 1), Column("ID", 4), Column("AGE", 4), Column("PRIORITY", 8),
               Column("STATE", 8)]
    if not narrow:
        columns.append(Column("OWNER", 8))
    if all_queues:
        columns.append(Column("QUEUE", 9))
    columns.append(Column("TITLE", flex=1, min=12))
    if width >= WIDE:
        columns.append(Column("ABOUT", flex=1, min=12))
    return tuple(columns)


class QueuesScreen(ItemActionsScreen):
    """Queues on the left (first: every queue), the chosen one's items on the right."""

    HELP_TITLE = "Queues"
    BINDINGS: ClassVar[list[BindingType]] = [
        *ITEM_BINDINGS,
        Binding("space", "mark", "Mark", show=False),
        Binding("a", "view('all')", "All", show=False),
        Binding("u", "view('unclaimed')", "Unclaimed", show=False),
        Binding("m", "view('mine')", "Mine", show=False),
        Binding("v", "cycle_view", "Next view", show=False),
        Binding("P", "sort('priority')", "Sort priority", show=False),
        Binding("A", "sort('age')", "Sort age", show=False),
        Binding("C", "sort('count')", "Sort count", show=False),
        Binding("O", "sort('owner')", "Sort owner", show=False),
        Binding("/", "focus_search", "Search"),
        Binding("escape", "escape", "Back", show=False),
        Binding("tab", "switch_pane", "Queues/items", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._forget: list[Any] = []
        self._stale = True
        self._last_redraw = 0.0
        self._redraw_timer: Timer | None = None

    @property
    def model(self) -> QueuesModel:
        return self.console.queues

    @property
    def ready(self) -> bool:
        return self.model.status != "loading"

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal():
            with Vertical(id="queues-pane"):
                yield Static("QUEUES", classes="pane-title")
                yield LineTable(id="queues", columns=QUEUE_COLUMNS)
            with Vertical(id="items-pane"):
                yield Static("", id="items-title", classes="pane-title")
                yield Input(placeholder="search items (key, title, owner, summary)",
                            id="search")
                yield LineTable(id="items")

    @property
    def queue_table(self) -> LineTable:
        return self.query_one("#queues", LineTable)

    @property
    def item_table(self) -> LineTable:
        return self.query_one("#items", LineTable)

    def on_mount(self) -> None:
        self.query_one("#search").display = False
        self.item_table.focus()
        self._forget = [self.model.observe(self._model_changed),
                        self.console.silences.observe(self._model_changed)]
        self.set_interval(self.console.tick_s, self._tick)
        if self.model.status == "loading":
            self.reload()

    def on_unmount(self) -> None:
        for forget in self._forget:
            forget()

    # -- rendering (only while shown; a hidden screen catches up when it resumes) ----------
    def _model_changed(self) -> None:
        """Redraw now, or once the last redraw is REDRAW_S old: a storm of item changes
        costs a few redraws a second, not one per batch."""
        self._stale = True
        if not self.is_current or self._redraw_timer is not None:
            return
        wait = self._last_redraw + REDRAW_S - monotonic()
        if wait <= 0:
            self.call_later(self._redraw)
        else:
            def fire() -> None:
                self._redraw_timer = None
                self._redraw()
            self._redraw_timer = self.set_timer(wait, fire)

    def on_screen_resume(self) -> None:
        if self._stale:
            self._redraw()

    def on_resize(self) -> None:
        self._stale = True
        self.call_after_refresh(self._redraw)

    def _tick(self) -> None:
        if self.is_current:
            self._stale = True
            self._redraw()

    def _redraw(self) -> None:
        # A redraw queued or timed while shown may come due after a switch away: a
        # hidden screen stays stale and is drawn when it resumes.
        if not self._stale or not self.is_current:
            return
        self._stale = False
        self._last_redraw = monotonic()
        self._render_queues()
        self._render_items()

    def _render_queues(self) -> None:
        table, model = self.queue_table, self.model
        narrow = self.size.width < NARROW_SCREEN
        self.set_class(narrow, "-narrow")
        rows: list[tuple[str, tuple[Any, ...]]] = []
        total_open = sum(int(q.get("open", 0)) for q in model.queues.values())
        total_claimed = sum(int(q.get("claimed", 0)) for q in model.queues.values())
        oldest = [a for a in (model.oldest_age_s(n) for n in model.queues) if a is not None]
        rows.append((ALL_QUEUES, (Text("(all)", style="bold italic"),
                                  Text(str(total_open), style="bold yellow"
                                       if total_open else "dim"),
                                  str(total_claimed), age(max(oldest)) if oldest else "-")))
        for name, q in sorted(model.queues.items()):
            rows.append((name, (
                Text(name, style="bold" if q.get("open") else ""),
                Text(str(q.get("open", 0)), style="bold yellow" if q.get("open") else "dim"),
                str(q.get("claimed", 0)), age(model.oldest_age_s(name)))))
        if narrow:
            rows = [(key, cells[:2]) for key, cells in rows]
        table.fit(NARROW_QUEUE_COLUMNS if narrow else QUEUE_COLUMNS)
        table.set_rows(rows)
        if model.queue in table.rows:
            table.move_cursor(row=table.get_row_index(model.queue))

    def _render_items(self) -> None:
        table, model = self.item_table, self.model
        width = table.scrollable_content_region.width or table.size.width
        wide = width >= WIDE
        table.fit(item_columns(model.queue == ALL_QUEUES, width))
        now_text = self.console.now().strftime("%Y-%m-%dT%H:%M:%S")
        # Rows whose cells did not change keep what they drew (ages, states and key
        # fields change a few rows at a time).
        table.set_rows([(str(item["id"]), self._cells(item, now_text, width))
                        for item in model.visible()], height=1 if wide else 2)
        self._title()
        self._fetch_fields()

    def _cells(self, item: Item, now: str, width: int) -> list[Any]:
        model = self.model
        state = item["state"]
        if state != "resolved" and is_snoozed(item, now):
            state = "snoozed"
        silence = self.console.silences.covering(item)
        fields = model.fields_of(item)
        priority = item.get("priority") or "-"
        cells: list[Any] = [
            Text("✓", style="bold green") if item["id"] in model.marked else "",
            str(item["id"]), age_since(item["first_seen"], self.console.now()),
            Text(priority, style=PRIORITY_STYLE.get(priority.lower(), "")),
            Text(state + (" 🔇" if silence else ""), style=STATE_STYLE.get(state, "dim"))]
        if width >= NARROW:
            cells.append(item.get("owner") or "-")
        if model.queue == ALL_QUEUES:
            cells.append(Text(item["queue"], no_wrap=True, overflow="ellipsis"))
        about = Text(style="dim", no_wrap=True, overflow="ellipsis")
        if width < NARROW and item.get("owner"):
            about.append(f"@{item['owner']}  ", style="bold cyan")
        about.append(fields.line() if fields else "…")
        if fields and fields.runbook:
            about.append(f"  📖 {fields.runbook}", style="dim underline")
        if width >= WIDE:
            cells += [item["title"], about]
        else:
            title = Text(item["title"], no_wrap=True, overflow="ellipsis")
            title.append("\n")
            title.append_text(about)
            cells.append(title)
        return cells

    def _title(self) -> None:
        model = self.model
        name = "all queues" if model.queue == ALL_QUEUES else model.queue
        if model.status == "error":
            text = Text(f"{name}: {model.problem}", style="bold red")
        elif model.status == "loading":
            text = Text(f"{name} — {model.view} — loading…")
        else:
            shown = len(model.visible())
            text = Text(f"{name} — {model.view} — {shown} item{'' if shown == 1 else 's'}")
            if model.more:
                text.append(" (more on the broker)", style="dim")
            if model.search:
                text.append(f" matching {model.search!r}", style="bold")
            arrow = "↑" if model.reverse else "↓"
            text.append(f"   sort: {model.sort} {arrow}", style="dim")
            if model.marked:
                text.append(f"   {len(model.marked)} marked", style="bold green")
        # One line high whatever it says: no layout pass.
        self.query_one("#items-title", Static).update(text, layout=False)

    @work(exclusive=True, group="queues-fields")
    async def _fetch_fields(self) -> None:
        wanted = self.model.missing_fields(FIELDS_PER_PASS)
        if wanted:
            await self.model.load_fields(self.console.client, wanted)

    # -- loading ------------------------------------------------------------------------
    @work(exclusive=True, group="queues-reload")
    async def reload(self, queues: bool = True) -> None:
        try:
            if queues:
                await self.model.load_queues(self.console.client)
            await self.model.load_items(self.console.client)
        except OpsbusError as exc:
            self.model.failed(f"cannot load: {exc.detail}")

    # -- selection and keys -------------------------------------------------------------
    def current_item(self) -> Item | None:
        key = self.item_table.cursor_key
        return self.model.items.get(int(key)) if key is not None else None

    def targets(self) -> list[Item]:
        marked = [self.model.items[i] for i in sorted(self.model.marked)
                  if i in self.model.items]
        return marked or super().targets()

    def operations_done(self) -> None:
        self.model.clear_marks()

    @on(LineTable.Highlighted, "#queues")
    def _queue_highlighted(self, event: LineTable.Highlighted) -> None:
        if event.key != self.queue_table.cursor_key:
            return  # a highlight from before the rows changed
        name = event.key
        if name != self.model.queue:
            self.model.select_queue(name)
            self._hide_search()
            self.reload(queues=False)

    @on(LineTable.Selected, "#queues")
    def _queue_selected(self) -> None:
        self.item_table.focus()

    @on(LineTable.Selected, "#items")
    def _item_selected(self, event: LineTable.Selected) -> None:
        self.console.open_item(int(event.key))

    def action_mark(self) -> None:
        item = self.current_item()
        if item is not None:
            self.model.toggle_mark(int(item["id"]))
            self._redraw()
            table = self.item_table
            table.move_cursor(row=table.cursor_row + 1)

    def action_view(self, view: str) -> None:
        self.model.set_view(view)
        self.reload(queues=False)

    def action_cycle_view(self) -> None:
        self.action_view(VIEWS[(VIEWS.index(self.model.view) + 1) % len(VIEWS)])

    def action_sort(self, key: str) -> None:
        self.model.set_sort(key)
        self._redraw()

    def action_switch_pane(self) -> None:
        (self.queue_table if self.item_table.has_focus else self.item_table).focus()

    def action_reload(self) -> None:
        self.reload()

    def filter_view(self) -> None:
        self.action_focus_search()

    def action_focus_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def _hide_search(self) -> None:
        search = self.query_one("#search", Input)
        with search.prevent(Input.Changed):
            search.value = ""
        search.display = False

    async def action_escape(self) -> None:
        """Escape clears a search (or marks) before it leaves the screen."""
        search = self.query_one("#search", Input)
        if search.display or self.model.search:
            self._hide_search()
            self.model.set_search("")
            self._redraw()
            self.item_table.focus()
        elif self.model.marked:
            self.model.clear_marks()
            self._redraw()
        else:
            await self.console.action_back()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.model.set_search(event.value.strip())
        self._redraw()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.query_one("#search", Input).display = bool(self.model.search)
        self.item_table.focus()

    def apply_command(self, words: list[str]) -> None:
        """`:queue NAME [VIEW]`: select a queue (`*` for every queue) and a view."""
        for word in words:
            if word in VIEWS:
                self.model.set_view(word)
            elif word in self.model.queues or word == ALL_QUEUES or not self.model.queues:
                self.model.select_queue(word)
                self._hide_search()
            else:
                self.notify(f"no queue {word!r} (known: {', '.join(self.model.queues)})",
                            severity="error")
        self.reload(queues=False)
