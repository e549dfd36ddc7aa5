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

from broker.errors import NotFound, OpsbusError
from console.feed import EventFeed, head_seq
from console.format import age_since
from console.messages import EventsArrived
from console.screens.base import ConsoleScreen
from console.widgets.columns import Column
from console.widgets.nav_table import NavTable
from console.widgets.rows import RowSpec, cursor_key, replace_rows

DEAD = "deadlettered"
"""The delivery state of a dead letter."""
DELIVERY_FILTER = "type LIKE 'opsbus.delivery.%' OR type LIKE 'opsbus.subscription.%'"
"""The broker's announcements of dead letters and of subscriptions changing state."""
RELOAD_AFTER_S = 0.5
"""A burst of announcements reloads once, this long after the first of them."""
REFRESH_S = 15.0
"""Pending counts change without an announcement: reload this often regardless."""


def failing(sub: dict[str, Any]) -> bool:
    status = sub.get("status") or {}
    counts = status.get("counts") or {}
    return (status.get("state", "active") != "active" or bool(counts.get(DEAD))
            or bool(status.get("last_error")))


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
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.selected: str | None = None
        self.dead: dict[int, dict[str, Any]] = {}
        self.available = True
        self.ready = False
        """The subscriptions were read at least once (or found unavailable)."""
        self.feed: EventFeed | None = None
        self._dead_of: str | None = None
        """The subscription whose dead letters the table shows."""
        self._reload_timer: Timer | None = None

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
        client = self.console.client
        try:
            names = [s["name"] for s in await client.list_objects("subscriptions")]
            found: dict[str, dict[str, Any]] = {}
            for name in names:
                found[name] = await client.subscription(name)
        except NotFound:
            self._unavailable("subscriptions are not available on this broker")
            return
        except OpsbusError as exc:
            self._unavailable(f"cannot load subscriptions: {exc.detail}")
            return
        self.available = True
        self.subscriptions = dict(sorted(found.items(),
                                         key=lambda kv: (not failing(kv[1]), kv[0])))
        self._render_subscriptions()
        if self.selected not in self.subscriptions:
            self.selected = cursor_key(self.query_one("#subscriptions", DataTable))
        await self._load_dead()
        self.ready = True

    def _unavailable(self, why: str) -> None:
        self.available = False
        self.query_one("#dead-title", Static).update(Text(why, style="bold yellow"))
        self.ready = True

    def _render_subscriptions(self) -> None:
        rows: list[RowSpec] = []
        for name, sub in self.subscriptions.items():
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

    async def _load_dead(self) -> None:
        table = self.query_one("#dead", DataTable)
        title = self.query_one("#dead-title", Static)
        if self.selected != self._dead_of:
            # Another subscription's dead letters: start at the top of its list.
            table.clear()
            self.dead = {}
            self._dead_of = self.selected
        if self.selected is None:
            title.update("DEAD LETTERS — no subscriptions configured")
            return
        try:
            answer = await self.console.client.deliveries(self.selected, state=DEAD, limit=200)
        except NotFound:
            title.update(Text("dead letters are not available on this broker",
                              style="bold yellow"))
            return
        except OpsbusError as exc:
            title.update(Text(f"cannot load dead letters: {exc.detail}", style="bold red"))
            return
        if self._dead_of != self.selected:
            return  # the selection moved on while this answer was on its way
        now = self.console.now()
        self.dead = {int(d["id"]): d for d in answer.get("deliveries", [])}
        replace_rows(table, [
            (str(d["id"]), (str(d["id"]), str(d["seq"]), str(d.get("attempts", "")),
                            str(d.get("last_status") or "-"),
                            age_since(d.get("updated_at"), now),
                            str(d.get("last_error") or "")))
            for d in self.dead.values()])
        title.update(f"DEAD LETTERS of {self.selected} — {len(self.dead)}")

    @on(DataTable.RowHighlighted, "#subscriptions")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a highlight from before the table was rebuilt
        name = event.row_key.value
        if name is not None and name != self.selected:
            self.selected = name
            self._reload_dead()

    @work(exclusive=True, group="deliveries-dead")
    async def _reload_dead(self) -> None:
        await self._load_dead()

    def _current_dead(self) -> dict[str, Any] | None:
        table = self.query_one("#dead", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.dead.get(int(key)) if key is not None else None

    @work(group="deliveries-retry")
    async def action_retry(self) -> None:
        dead = self._current_dead()
        if dead is None or self.selected is None:
            self.notify("select a dead letter first (tab switches tables)", severity="warning")
            return
        try:
            await self.console.client.retry_delivery(self.selected, int(dead["id"]))
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
