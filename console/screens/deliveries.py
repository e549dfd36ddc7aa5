"""The Deliveries screen: subscriptions (failing first), their dead letters, retry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Static

from broker.errors import OpsbusError
from console.feed import EventFeed, head_seq
from console.format import age_since
from console.messages import EventsArrived
from console.models.deliveries import DEAD, DeliveriesModel, failing
from console.screens.base import ConsoleScreen
from console.widgets.columns import Column
from console.widgets.nav_table import NavTable
from console.widgets.rows import RowSpec, replace_rows

DELIVERY_FILTER = "type LIKE 'opsbus.delivery.%' OR type LIKE 'opsbus.subscription.%'"
"""The broker's announcements of dead letters and of subscriptions changing state."""
RELOAD_AFTER_S = 0.5
"""A burst of announcements reloads once, this long after the first of them."""
REFRESH_S = 15.0
"""Pending counts change without an announcement: reload this often regardless."""


class DeliveriesScreen(ConsoleScreen):
    """Subscriptions with their state and counts; the selected one's dead letters."""

    HELP_TITLE = "Deliveries"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry"),
        Binding("enter", "open", "Event detail", show=False),
        Binding("tab", "switch_pane", "Subscriptions/dead letters", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    MUTATING = frozenset({"retry"})

    def __init__(self) -> None:
        super().__init__()
        self.model = DeliveriesModel()
        self.feed: EventFeed | None = None
        self._reload_timer: Timer | None = None
        self._dead_shown: str | None = None
        """The subscription whose dead letters the table shows."""

    @property
    def ready(self) -> bool:
        return self.model.status != "loading"

    def compose_body(self) -> Iterable[Widget]:
        with Vertical():
            yield Static("SUBSCRIPTIONS (failing first)", classes="pane-title")
            yield NavTable(id="subscriptions", columns=(
                Column("NAME", 20), Column("TYPE", 5), Column("STATE", 12),
                Column("PENDING", 7), Column("DEAD", 5), Column("LAST ERROR", flex=1, min=10)))
            yield Static("DEAD LETTERS", id="dead-title", classes="pane-title")
            yield NavTable(id="dead", columns=(
                Column("DELIVERY", 8), Column("SEQ", 8), Column("ATTEMPTS", 8),
                Column("STATUS", 6), Column("AGE", 6), Column("LAST ERROR", flex=1, min=10)))

    def on_mount(self) -> None:
        for table in self.query(NavTable):
            table.fit()
        self.query_one("#subscriptions").focus()
        self.model.observe(self._redraw)
        self.set_interval(REFRESH_S, self.reload)
        self._follow()

    @work(exclusive=True, group="deliveries-feed")
    async def _follow(self) -> None:
        client = self.console.client
        after = await head_seq(client)  # None: the reload below reports the broker's absence
        self.reload()
        self.feed = EventFeed("deliveries", client, self, after=after, filter=DELIVERY_FILTER,
                              window_s=self.console.batch_window_s)
        await self.feed.run()

    @on(EventsArrived)
    def _announced(self, message: EventsArrived) -> None:
        try:
            if message.feed == "deliveries":
                message.stop()
                if self._reload_timer is None:
                    self._reload_timer = self.set_timer(RELOAD_AFTER_S, self._reload_now)
        finally:
            message.handled.set()

    def _reload_now(self) -> None:
        self._reload_timer = None
        self.reload()

    @work(exclusive=True, group="deliveries")
    async def reload(self) -> None:
        await self.model.load(self.console.client)

    def _redraw(self) -> None:
        model = self.model
        title = self.query_one("#dead-title", Static)
        if model.status == "unavailable":
            title.update(Text(model.problem or "", style="bold yellow"))
            return
        rows: list[RowSpec] = []
        for name, sub in model.subscriptions.items():
            status = sub.get("status") or {}
            counts = status.get("counts") or {}
            last = status.get("last_error") or {}
            state = str(status.get("state", "?"))
            breaker = status.get("breaker") or {}
            if state == "suspended" and breaker.get("consecutive_failures"):
                state = f"suspended ({breaker['consecutive_failures']}✗)"
            rows.append((name, (
                Text(name, style="bold red" if failing(sub) else ""), str(sub.get("type", "")),
                Text(state, style="green" if state == "active" else "bold red"),
                str(counts.get("pending", 0)),
                Text(str(counts.get(DEAD, 0)), style="bold red" if counts.get(DEAD) else "dim"),
                str(last.get("error") or ""))))
        replace_rows(self.query_one("#subscriptions", DataTable), rows)
        table = self.query_one("#dead", DataTable)
        if self._dead_shown != model.dead_of:
            table.clear()  # another subscription's dead letters: start at the top
            self._dead_shown = model.dead_of
        now = self.console.now()
        replace_rows(table, [
            (str(d["id"]), (str(d["id"]), str(d["seq"]), str(d.get("attempts", "")),
                            str(d.get("last_status") or "-"),
                            age_since(d.get("updated_at"), now),
                            str(d.get("last_error") or "")))
            for d in model.dead.values()])
        if model.dead_problem:
            title.update(Text(model.dead_problem, style="bold yellow"))
        else:
            title.update(f"DEAD LETTERS of {model.selected} — {len(model.dead)}")

    @on(DataTable.RowHighlighted, "#subscriptions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a highlight from before the table was rebuilt
        name = event.row_key.value
        if name is not None and name != self.model.selected:
            self.model.select(str(name))
            self._reload_dead()

    @work(exclusive=True, group="deliveries-dead")
    async def _reload_dead(self) -> None:
        await self.model.load_dead(self.console.client)

    def _current_dead(self) -> dict[str, Any] | None:
        table = self.query_one("#dead", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.model.dead.get(int(key)) if key is not None else None

    @work(group="deliveries-retry")
    async def action_retry(self) -> None:
        dead = self._current_dead()
        selected = self.model.selected
        if dead is None or selected is None:
            self.notify("select a dead letter first (tab switches tables)", severity="warning")
            return
        try:
            await self.console.client.retry_delivery(selected, int(dead["id"]))
        except OpsbusError as exc:
            self.notify(f"retry of delivery {dead['id']}: {exc.detail}", severity="error")
            return
        self.notify(f"delivery {dead['id']} is due again", timeout=3)
        self.reload()  # the counts changed too, not only the dead letters

    def action_open(self) -> None:
        dead = self._current_dead()
        if dead is not None:
            self.console.open_event(int(dead["seq"]))

    def action_switch_pane(self) -> None:
        subs, dead = self.query_one("#subscriptions"), self.query_one("#dead")
        (subs if dead.has_focus else dead).focus()

    def action_reload(self) -> None:
        self.reload()

    @on(DataTable.RowSelected, "#dead")
    def _dead_selected(self) -> None:
        self.action_open()
