"""Detail screens: one event (attributes, data, routing, related events) and one item
(what its latest event says, fields, history with notes in full, grouped events)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static, TextArea

from broker.errors import OpsbusError
from broker.summary import one_line
from console.format import age_since, emit_command, pretty_json, short_time, until_text
from console.models.items import Item, KeyFields, key_fields
from console.screens.base import ConsoleScreen
from console.screens.item_actions import ITEM_BINDINGS, ItemActionsScreen
from console.widgets.columns import Column
from console.widgets.json_view import JsonView
from console.widgets.nav_table import NavTable
from console.widgets.rows import replace_rows

RELATED_LIMIT = 200
EVENT_COLUMNS = (Column("SEQ", 8), Column("TIME", 14), Column("TYPE", flex=3, min=10),
                 Column("SOURCE", flex=3, min=8), Column("SUBJECT", flex=2, min=6))


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return pretty_json(value).replace("\n", " ") if value is not None else ""


def event_time_order(stored: dict[str, Any]) -> tuple[str, int]:
    """Events by their own time (when it happened), then by seq."""
    return str(stored["event"].get("time") or stored.get("recvtime") or ""), int(stored["seq"])


class EventDetailScreen(ConsoleScreen):
    """An event: attributes with the broker's seq, recvtime, routes and targets; its
    data as JSON; the events sharing its correlation id, in the order they happened."""

    HELP_TITLE = "Event detail"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "copy_json", "Copy JSON"),
        Binding("Y", "copy_command", "Copy emit cmd"),
        Binding("t", "causal", "Causal tree"),
        Binding("e", "to_emit", "Edit & emit copy"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, seq: int) -> None:
        super().__init__()
        self.seq = seq
        self.stored: dict[str, Any] | None = None
        self.problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.stored is not None or self.problem is not None

    def compose_body(self) -> Iterable[Widget]:
        yield Static(f"event seq {self.seq}", id="detail-title", classes="pane-title")
        with Horizontal(id="detail-main"):
            yield NavTable(id="attributes", zebra_stripes=False, columns=(
                Column("ATTRIBUTE", 16), Column("VALUE", flex=1, min=10)))
            yield JsonView(id="data")
        yield Static("RELATED", id="related-title", classes="pane-title")
        yield NavTable(id="related", columns=EVENT_COLUMNS)
        yield TextArea("", read_only=True, id="copied", soft_wrap=True)

    def on_mount(self) -> None:
        self.query_one("#copied").display = False
        self.query_one("#attributes").focus()
        self.load()

    @work(exclusive=True, group="detail")
    async def load(self) -> None:
        client = self.console.client
        try:
            stored = await client.event(self.seq)
        except OpsbusError as exc:
            self.problem = exc.detail
            self.query_one("#detail-title", Static).update(
                Text(f"event seq {self.seq}: {exc.detail}", style="bold red"))
            return
        event = stored["event"]
        self.query_one("#detail-title", Static).update(
            Text(f"seq {stored['seq']}  {one_line(event)}", style="bold"))
        table = self.query_one("#attributes", NavTable)
        table.fit()
        table.clear()
        for name, value in event.items():
            if name not in ("data", "data_base64"):
                table.add_row(Text(name, style="bold"), _cell(value), height=None)
        table.add_row(Text("seq", style="dim"), str(stored["seq"]))
        table.add_row(Text("recvtime", style="dim"), str(stored.get("recvtime", "")),
                      key="recvtime")
        table.add_row(Text("routes", style="dim"), ", ".join(stored.get("routes", [])) or "-")
        for target in stored.get("targets", []):
            detail = _cell(target.get("detail")) if target.get("detail") else ""
            table.add_row(Text("target", style="dim"),
                          f"{target['route']} → {target['target']} {detail}".strip(),
                          height=None)
        self.query_one("#data", JsonView).show(event.get("data", event.get("data_base64")))
        correlation = event.get("correlationid") or event.get("id")
        related = self.query_one("#related", NavTable)
        related.fit()
        try:
            page = await client.events(limit=RELATED_LIMIT, correlationid=correlation)
        except OpsbusError:
            page = {"events": []}
        for item in sorted(page["events"], key=event_time_order):
            e = item["event"]
            related.add_row(str(item["seq"]), short_time(e.get("time")), e.get("type", ""),
                            e.get("source", ""), e.get("subject") or "", key=str(item["seq"]))
        if str(self.seq) in related.rows:
            related.move_cursor(row=related.get_row_index(str(self.seq)), animate=False)
        self.query_one("#related-title", Static).update(
            f"RELATED — correlationid {correlation} — {related.row_count} event"
            f"{'' if related.row_count == 1 else 's'}, in the order they happened")
        self.stored = stored

    @on(DataTable.RowSelected, "#related")
    def _related(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None and int(event.row_key.value) != self.seq:
            self.console.open_event(int(event.row_key.value))

    def _copy(self, text: str, what: str) -> None:
        self.console.copy_text(text, what)
        copied = self.query_one("#copied", TextArea)
        copied.load_text(text)
        copied.display = True

    def action_copy_json(self) -> None:
        if self.stored:
            self._copy(pretty_json(self.stored["event"]), "the event as JSON")

    def action_copy_command(self) -> None:
        if self.stored:
            self._copy(emit_command(self.stored["event"]), "an opsbus emit command")

    def action_causal(self) -> None:
        self.console.open_causal(self.seq)

    async def action_to_emit(self) -> None:
        if self.stored:
            await self.console.open_emit(event=self.stored["event"])

    def action_reload(self) -> None:
        self.load()


def about(fields: KeyFields | None) -> Text:
    """The key fields of the latest event, for the top of the item detail."""
    if fields is None:
        return Text("loading the latest event…", style="dim")
    text = Text()
    text.append(fields.summary or "(the latest event has no summary)",
                style="bold" if fields.summary else "dim")
    if fields.labels:
        text.append("\n")
        for name, value in fields.labels:
            text.append(f"{name}=", style="dim")
            text.append(f"{value}  ")
    if fields.runbook:
        text.append("\nrunbook: ", style="dim")
        text.append(fields.runbook, style="underline")
    return text


class ItemDetailScreen(ItemActionsScreen):
    """A todo item: what its latest event says, its fields, history and grouped events.
    It follows the console's item changes, so changes made by anyone show up live."""

    HELP_TITLE = "Item detail"
    BINDINGS: ClassVar[list[BindingType]] = [
        *ITEM_BINDINGS,
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, item_id: int) -> None:
        super().__init__()
        self.item_id = item_id
        self.item: Item | None = None
        self.fields: KeyFields | None = None
        self.problem: str | None = None
        self._forget: Any = None

    @property
    def ready(self) -> bool:
        return (self.item is not None and self.fields is not None) or self.problem is not None

    def compose_body(self) -> Iterable[Widget]:
        yield Static(f"item {self.item_id}", id="item-title", classes="pane-title")
        yield Static("", id="item-about")
        with Horizontal(id="item-main"):
            yield NavTable(id="fields", cursor_type="none", show_header=False,
                           zebra_stripes=False,
                           columns=(Column("FIELD", 12), Column("VALUE", flex=1, min=10)))
            with Vertical(id="history-pane"):
                yield Static("HISTORY", classes="pane-title")
                yield NavTable(id="history", columns=(
                    Column("AT", 8), Column("ACTION", 10), Column("BY", 10),
                    Column("NOTE", flex=1, min=10)))
        yield Static("EVENTS", id="events-title", classes="pane-title")
        yield NavTable(id="item-events", columns=EVENT_COLUMNS)

    def on_mount(self) -> None:
        self.query_one("#item-events").focus()
        self._forget = self.console.listen_items(self._item_heard)
        self.set_interval(self.console.tick_s, self._tick)
        self.load()

    def on_unmount(self) -> None:
        if self._forget is not None:
            self._forget()

    def current_item(self) -> Item | None:
        return self.item

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.item is None and action in self.MUTATING:
            return False  # no such item (or not loaded): nothing to claim or resolve
        return super().check_action(action, parameters)

    def _item_heard(self, item: Item) -> None:
        if int(item["id"]) == self.item_id:
            self.load()

    def action_done(self, name: str, answer: dict[str, Any]) -> None:
        self.load()

    def _tick(self) -> None:
        if self.item is not None and self.is_current:
            self._show(self.item)

    @work(exclusive=True, group="item-detail")
    async def load(self) -> None:
        client = self.console.client
        try:
            item = await client.todo(self.item_id)
        except OpsbusError as exc:
            self.problem = exc.detail
            self.query_one("#item-title", Static).update(
                Text(f"item {self.item_id}: {exc.detail}", style="bold red"))
            self.refresh_bindings()
            return
        latest_changed = (self.item or {}).get("event_seq") != item["event_seq"]
        self.item, self.problem = item, None
        self._show(item)
        self.refresh_bindings()
        if self.fields is None or latest_changed:  # after the item: it shows sooner
            try:
                self.fields = key_fields((await client.event(int(item["event_seq"])))["event"])
            except OpsbusError:
                self.fields = KeyFields()
            self.query_one("#item-about", Static).update(about(self.fields))

    def _show(self, item: Item) -> None:
        self.query_one("#item-title", Static).update(
            Text(f"#{item['id']} {item['title']}  [{item['queue']}]", style="bold"))
        self.query_one("#item-about", Static).update(about(self.fields))
        resolution = item.get("resolution") or {}
        now = self.console.now()
        fields = self.query_one("#fields", NavTable)
        history = self.query_one("#history", NavTable)
        events = self.query_one("#item-events", NavTable)
        for table in (fields, history, events):
            if table.fit():
                table.clear()
        replace_rows(fields, [
            (name, (Text(name, style="bold"), _cell(value))) for name, value in (
                ("state", item["state"]), ("owner", item.get("owner")),
                ("priority", item.get("priority")), ("key", item["key"]),
                ("count", item["count"]),
                ("first seen", f"{age_since(item['first_seen'], now)} ago"),
                ("last seen", f"{age_since(item['last_seen'], now)} ago"),
                ("lease", until_text(item.get("lease_expires"), now)),
                ("snoozed", until_text(item.get("snoozed_until"), now)),
                ("resolved by", resolution.get("by")), ("resolution", resolution.get("note")),
            ) if value is not None], height=None)
        # History only grows and is oldest first, so new entries append below the cursor.
        replace_rows(history, [
            (str(index), (f"{age_since(entry.get('at'), now)} ago", entry.get("action", ""),
                          entry.get("operator") or "-", history_note(entry)))
            for index, entry in enumerate(item.get("history", []))], height=None)
        replace_rows(events, [
            (str(e["seq"]), (str(e["seq"]), short_time(e.get("time")), e.get("type", ""),
                             e.get("source", ""), e.get("subject") or ""))
            for e in reversed(item.get("events", []))])
        self.query_one("#events-title", Static).update(
            f"EVENTS — {item['count']} grouped under key {item['key']}")

    @on(DataTable.RowSelected, "#item-events")
    def _event(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.console.open_event(int(event.row_key.value))

    @on(DataTable.RowSelected, "#history")
    def _history(self, event: DataTable.RowSelected) -> None:
        history = (self.item or {}).get("history", [])
        if event.row_key.value is not None and int(event.row_key.value) < len(history):
            entry = history[int(event.row_key.value)]
            seq = entry.get("event_seq") or entry.get("audit_seq")
            if seq:
                self.console.open_event(int(seq))

    def action_reload(self) -> None:
        self.load()


def history_note(entry: dict[str, Any]) -> str:
    """The NOTE cell of a history entry; a quick action says which one and how it went."""
    detail = entry.get("detail") or {}
    if entry.get("action") == "actioned" and detail.get("action"):
        status = f" ({detail['status']})" if detail.get("status") is not None else ""
        outcome = "ok" if detail.get("ok") else "failed"
        return f"{detail['action']} {outcome}{status} → seq {entry.get('event_seq')}"
    return str(entry.get("note") or "")

