"""The Queues screen: queues with counts, and the selected queue's items, live."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from broker.errors import OpsbusError
from console.feed import EventFeed, head_seq
from console.format import age, age_since, parse_time
from console.messages import EventsArrived
from console.screens.item_actions import AUDIT_FILTER, ITEM_BINDINGS, ItemActionsScreen
from console.widgets.columns import add_columns

VIEWS = ("all", "unclaimed", "mine", "snoozed", "resolved")
"""Item lists: all = open + claimed (not snoozed)."""
MAX_ITEMS = 500
"""Items listed per queue and view (newest activity first)."""
STATE_STYLE = {"open": "bold yellow", "claimed": "bold cyan", "resolved": "green"}
PRIORITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow"}


def view_params(view: str, operator: str) -> dict[str, Any]:
    """`GET /v1/todos` parameters for a view."""
    return {"all": {"state": "active"}, "unclaimed": {"state": "open"},
            "mine": {"state": "claimed", "owner": operator}, "snoozed": {"state": "snoozed"},
            "resolved": {"state": "resolved"}}[view]


def in_view(item: dict[str, Any], view: str, operator: str, now: str) -> bool:
    """Whether an item (as announced by an audit event) belongs in the view."""
    snoozed = bool(item.get("snoozed_until")) and str(item["snoozed_until"]) > now
    state = item.get("state")
    if view == "resolved":
        return state == "resolved"
    if view == "snoozed":
        return state != "resolved" and snoozed
    if snoozed:
        return False
    if view == "unclaimed":
        return state == "open"
    if view == "mine":
        return state == "claimed" and item.get("owner") == operator
    return state in ("open", "claimed")


class QueuesScreen(ItemActionsScreen):
    """Queues on the left, the selected queue's items on the right."""

    HELP_TITLE = "Queues"
    BINDINGS: ClassVar[list[BindingType]] = [
        *ITEM_BINDINGS,
        Binding("a", "view('all')", "All"),
        Binding("u", "view('unclaimed')", "Unclaimed"),
        Binding("m", "view('mine')", "Mine"),
        Binding("v", "cycle_view", "Next view", show=False),
        Binding("/", "focus_search", "Search"),
        Binding("tab", "switch_pane", "Queues/items", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.queues: dict[str, dict[str, Any]] = {}
        self.queue: str | None = None
        self.view = "all"
        self.search = ""
        self.items: dict[int, dict[str, Any]] = {}
        self.feed: EventFeed | None = None
        self.loaded = False
        """True once queues and items are on screen (tests wait for it)."""
        self._counts_timer: Timer | None = None

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal():
            with Vertical(id="queues-pane"):
                yield Static("QUEUES", classes="pane-title")
                yield DataTable(id="queues", cursor_type="row", zebra_stripes=True)
            with Vertical(id="items-pane"):
                yield Static("", id="items-title", classes="pane-title")
                yield Input(placeholder="search items (key, title, owner)", id="search")
                yield DataTable(id="items", cursor_type="row", zebra_stripes=True)

    @property
    def queue_table(self) -> DataTable[Any]:
        return self.query_one("#queues", DataTable)

    @property
    def item_table(self) -> DataTable[Any]:
        return self.query_one("#items", DataTable)

    def on_mount(self) -> None:
        add_columns(self.queue_table, ("QUEUE", 14), ("OPEN", 5), ("CLAIMED", 7),
                    ("OLDEST", 7))
        add_columns(self.item_table, ("ID", 5), ("AGE", 6), ("COUNT", 5), ("PRIORITY", 8),
                    ("STATE", 8), ("OWNER", 10), ("TITLE", 60), ("KEY", 48))
        self.query_one("#search").display = False
        self.item_table.focus()
        self.set_interval(15, self._render_items)  # ages keep moving without new events
        self._start()

    # -- loading ------------------------------------------------------------------------
    @work(exclusive=True, group="queues-feed")
    async def _start(self) -> None:
        client = self.console.client
        after = await head_seq(client)
        try:
            await self._load_queues()
            await self._load_items()
        except OpsbusError as exc:
            self._title(f"cannot load queues: {exc.detail}")
            after = None
        self.loaded = True
        # Changes made after `after` arrive as audit events; replayed ones are harmless
        # (an item is only replaced by a newer version of itself).
        self.feed = EventFeed("queues", client, self, after=after, filter=AUDIT_FILTER,
                              window_s=self.console.batch_window_s)
        await self.feed.run()

    async def _load_queues(self) -> None:
        queues = await self.console.client.queues()
        fetched = datetime.now(UTC)
        self.queues = {}
        for queue in queues:
            # The broker's age is at its clock; as a moment it keeps ageing on ours.
            oldest = queue.get("oldest_open_age_s")
            queue["_oldest_at"] = None if oldest is None else fetched - timedelta(
                seconds=float(oldest))
            self.queues[queue["name"]] = queue
        self.console.known_queues = sorted(self.queues)
        if self.queue is None or self.queue not in self.queues:
            # Open on the first queue that has work, else the first one.
            busy = [n for n, q in sorted(self.queues.items()) if q.get("open") or q.get("claimed")]
            self.queue = next(iter(busy or sorted(self.queues)), None)
        self._render_queues()

    async def _load_items(self) -> None:
        self.items = {}
        if self.queue is not None:
            answer = await self.console.client.todos(
                queue=self.queue, limit=MAX_ITEMS,
                **view_params(self.view, self.console.operator))
            self.items = {item["id"]: item for item in answer["items"]}
        self._render_items()

    @work(exclusive=True, group="queues-reload")
    async def reload(self, queues: bool = True) -> None:
        try:
            if queues:
                await self._load_queues()
            await self._load_items()
        except OpsbusError as exc:
            self.notify(f"cannot load: {exc.detail}", severity="error")

    @work(exclusive=True, group="queues-counts")
    async def _refresh_counts(self) -> None:
        try:
            await self._load_queues()
        except OpsbusError:
            pass  # the status bar already says the broker is away

    # -- rendering ----------------------------------------------------------------------
    def _render_queues(self) -> None:
        table = self.queue_table
        now = self.console.now()
        rows = []
        for name, q in sorted(self.queues.items()):
            oldest = q.get("_oldest_at")
            rows.append((name, (
                Text(name, style="bold" if q.get("open") else ""),
                Text(str(q.get("open", 0)), style="bold yellow" if q.get("open") else "dim"),
                str(q.get("claimed", 0)),
                age((now - oldest).total_seconds()) if oldest else "-")))
        if [key.value for key in table.rows] == [name for name, _ in rows]:
            # Same queues: update the counts in place so the cursor does not jump.
            for name, cells in rows:
                for column, value in zip(table.columns, cells, strict=True):
                    table.update_cell(name, column, value)
            return
        table.clear()
        for name, cells in rows:
            table.add_row(*cells, key=name)
        if self.queue in self.queues:
            table.move_cursor(row=table.get_row_index(self.queue), animate=False)

    def _title(self, text: str | None = None) -> None:
        if text is None:
            shown = len(self.item_table.rows)
            text = (f"{self.queue or 'no queue'} — {self.view} — {shown} item"
                    f"{'' if shown == 1 else 's'}")
            if self.search:
                text += f" matching {self.search!r}"
        self.query_one("#items-title", Static).update(text)

    def _render_items(self) -> None:
        table = self.item_table
        selected = self.current_item()
        now = self.console.now()
        table.clear()
        needle = self.search.lower()
        ordered = sorted(self.items.values(), key=lambda i: (i["updated_at"], i["id"]),
                         reverse=True)
        for item in ordered:
            text = f"{item['key']} {item['title']} {item.get('owner') or ''}".lower()
            if needle and needle not in text:
                continue
            state = item["state"]
            if item.get("snoozed_until") and state != "resolved":
                state = "snoozed" if (parse_time(item["snoozed_until"]) or now) > now else state
            table.add_row(
                str(item["id"]), age_since(item["first_seen"], now), str(item["count"]),
                Text(item.get("priority") or "-",
                     style=PRIORITY_STYLE.get(item.get("priority") or "", "")),
                Text(state, style=STATE_STYLE.get(state, "dim")),
                item.get("owner") or "-", item["title"], item["key"], key=str(item["id"]))
        if selected is not None and str(selected["id"]) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected["id"])), animate=False)
        self._title()

    # -- live updates -------------------------------------------------------------------
    @on(EventsArrived)
    def _audit(self, message: EventsArrived) -> None:
        try:
            if message.feed != "queues":
                return
            message.stop()
            now = self.console.now().strftime("%Y-%m-%dT%H:%M:%S")
            changed = False
            for _, event in message.events:
                data = event.get("data")
                item = data.get("item") if isinstance(data, dict) else None
                if isinstance(item, dict) and "id" in item:
                    changed |= self._apply(item, now)
            if changed:
                self._render_items()
            self._schedule_counts()
        finally:
            message.handled.set()

    def _apply(self, item: dict[str, Any], now: str) -> bool:
        """Put a newer version of an item in (or out of) the list; True if it changed."""
        known = self.items.get(item["id"])
        if known is not None and known["updated_at"] > item["updated_at"]:
            return False
        if item.get("queue") == self.queue and in_view(item, self.view,
                                                       self.console.operator, now):
            self.items[item["id"]] = item
            return True
        return self.items.pop(item["id"], None) is not None

    def _schedule_counts(self) -> None:
        # A burst of audit events refreshes the counts once, not once per event.
        if self._counts_timer is None:
            def fire() -> None:
                self._counts_timer = None
                self._refresh_counts()
            self._counts_timer = self.set_timer(0.3, fire)

    def item_changed(self, item: dict[str, Any]) -> None:
        if self._apply(item, self.console.now().strftime("%Y-%m-%dT%H:%M:%S")):
            self._render_items()
        self._schedule_counts()

    # -- selection and keys -------------------------------------------------------------
    def current_item(self) -> dict[str, Any] | None:
        table = self.item_table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.items.get(int(key)) if key is not None else None

    @on(DataTable.RowHighlighted, "#queues")
    def _queue_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != self.queue_table.cursor_row:
            return  # a highlight from before the table was rebuilt
        name = event.row_key.value
        if name is not None and name != self.queue:
            self.queue = name
            self.reload(queues=False)

    @on(DataTable.RowSelected, "#queues")
    def _queue_selected(self) -> None:
        self.item_table.focus()

    @on(DataTable.RowSelected, "#items")
    def _item_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.console.open_item(int(event.row_key.value))

    def action_view(self, view: str) -> None:
        self.view = view
        self.reload(queues=False)

    def action_cycle_view(self) -> None:
        self.action_view(VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)])

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

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search = event.value.strip()
        self._render_items()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        search = self.query_one("#search", Input)
        search.display = bool(self.search)
        self.item_table.focus()

    def apply_command(self, words: list[str]) -> None:
        """`:queue NAME [VIEW]`: select a queue (and view)."""
        for word in words:
            if word in VIEWS:
                self.view = word
            elif word in self.queues or not self.queues:
                self.queue = word
            else:
                self.notify(f"no queue {word!r} (known: {', '.join(self.queues)})",
                            severity="error")
        self._render_queues()
        self.reload(queues=False)
