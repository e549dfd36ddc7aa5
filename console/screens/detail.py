"""Detail screens: one event (attributes, data, routing, related events) and one item."""

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
from console.feed import EventFeed, head_seq
from console.format import age_since, emit_command, pretty_json, short_time
from console.messages import EventsArrived
from console.screens.base import ConsoleScreen
from console.screens.item_actions import (
    AUDIT_FILTER,
    ITEM_BINDINGS,
    ITEM_MUTATING,
    ItemActionsScreen,
    action_params,
)
from console.widgets.action_picker import ActionPicker
from console.widgets.columns import add_columns
from console.widgets.editor import EditorModal
from console.widgets.json_view import JsonView
from console.widgets.rows import replace_rows

RELATED_LIMIT = 200


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return pretty_json(value).replace("\n", " ") if value is not None else ""


def event_columns(table: DataTable[Any]) -> None:
    add_columns(table, ("SEQ", 8), ("TIME", 14), ("TYPE", 32), ("SOURCE", 40),
                ("SUBJECT", 40))


class EventDetailScreen(ConsoleScreen):
    """An event: attributes with the broker's seq, recvtime, routes and targets; its
    data as JSON; the events sharing its correlation id."""

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
        self.loaded = False

    def compose_body(self) -> Iterable[Widget]:
        yield Static(f"event seq {self.seq}", id="detail-title", classes="pane-title")
        with Horizontal(id="detail-main"):
            yield DataTable(id="attributes", cursor_type="row", show_header=True)
            yield JsonView(id="data")
        yield Static("RELATED", id="related-title", classes="pane-title")
        yield DataTable(id="related", cursor_type="row", zebra_stripes=True)
        yield TextArea("", read_only=True, id="copied", soft_wrap=True)

    def on_mount(self) -> None:
        add_columns(self.query_one("#attributes", DataTable), ("ATTRIBUTE", 16),
                    ("VALUE", 60))
        event_columns(self.query_one("#related", DataTable))
        self.query_one("#copied").display = False
        self.query_one("#attributes").focus()
        self.load()

    @work(exclusive=True, group="detail")
    async def load(self) -> None:
        client = self.console.client
        try:
            stored = await client.event(self.seq)
        except OpsbusError as exc:
            self.query_one("#detail-title", Static).update(
                Text(f"event seq {self.seq}: {exc.detail}", style="bold red"))
            self.loaded = True
            return
        self.stored = stored
        event = stored["event"]
        self.query_one("#detail-title", Static).update(
            Text(f"seq {stored['seq']}  {one_line(event)}", style="bold"))
        table = self.query_one("#attributes", DataTable)
        table.clear()
        for name, value in event.items():
            if name not in ("data", "data_base64"):
                table.add_row(Text(name, style="bold"), _cell(value))
        table.add_row(Text("seq", style="dim"), str(stored["seq"]))
        table.add_row(Text("recvtime", style="dim"), str(stored.get("recvtime", "")),
                      key="recvtime")
        table.add_row(Text("routes", style="dim"), ", ".join(stored.get("routes", [])) or "-")
        for target in stored.get("targets", []):
            detail = _cell(target.get("detail")) if target.get("detail") else ""
            table.add_row(Text("target", style="dim"),
                          f"{target['route']} → {target['target']} {detail}".strip())
        self.query_one("#data", JsonView).show(event.get("data", event.get("data_base64")))
        correlation = event.get("correlationid") or event.get("id")
        related = self.query_one("#related", DataTable)
        related.clear()
        try:
            page = await client.events(limit=RELATED_LIMIT, correlationid=correlation)
        except OpsbusError:
            page = {"events": []}
        for item in page["events"]:
            e = item["event"]
            related.add_row(str(item["seq"]), short_time(e.get("time")), e.get("type", ""),
                            e.get("source", ""), e.get("subject") or "", key=str(item["seq"]))
        self.query_one("#related-title", Static).update(
            f"RELATED — correlationid {correlation} — {related.row_count} event"
            f"{'' if related.row_count == 1 else 's'}")
        self.loaded = True

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


class ItemDetailScreen(ItemActionsScreen):
    """A todo item: its fields, history and grouped events, with the item keys. It
    follows the item's audit events, so changes made by anyone show up live."""

    HELP_TITLE = "Item detail"
    BINDINGS: ClassVar[list[BindingType]] = [
        *ITEM_BINDINGS,
        Binding("x", "quick_action", "Actions"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    MUTATING: ClassVar[frozenset[str]] = ITEM_MUTATING | {"quick_action"}

    def __init__(self, item_id: int) -> None:
        super().__init__()
        self.item_id = item_id
        self.item: dict[str, Any] | None = None
        self.loaded = False
        self.feed: EventFeed | None = None
        self.feed_name = f"item-{item_id}"
        self._feed_lost = False

    def compose_body(self) -> Iterable[Widget]:
        yield Static(f"item {self.item_id}", id="item-title", classes="pane-title")
        with Horizontal(id="item-main"):
            yield DataTable(id="fields", cursor_type="none", show_header=False)
            with Vertical():
                yield Static("HISTORY", classes="pane-title")
                yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
        yield Static("EVENTS", id="events-title", classes="pane-title")
        yield DataTable(id="item-events", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        add_columns(self.query_one("#fields", DataTable), ("FIELD", 14), ("VALUE", 60))
        add_columns(self.query_one("#history", DataTable), ("AT", 9), ("ACTION", 10),
                    ("BY", 12), ("NOTE", 60))
        event_columns(self.query_one("#item-events", DataTable))
        self.query_one("#item-events").focus()
        self._follow()

    def on_unmount(self) -> None:
        self.console.forget_feed(self.feed_name)

    def current_item(self) -> dict[str, Any] | None:
        return self.item

    def item_changed(self, item: dict[str, Any]) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if allowed and action == "quick_action" and not (self.item or {}).get("actions"):
            return None  # shown dimmed: this item's queue permits no actions
        return allowed

    # -- loading and following ----------------------------------------------------------
    @work(exclusive=True, group="item-feed")
    async def _follow(self) -> None:
        client = self.console.client
        after = await head_seq(client)  # None: the load below reports the broker's absence
        # Loaded after `after` was read: a change in between arrives on the feed too.
        self.load()
        self.feed = EventFeed(self.feed_name, client, self, after=after,
                              filter=f"{AUDIT_FILTER} AND todoid = {int(self.item_id)}",
                              window_s=self.console.batch_window_s,
                              on_state=self._feed_state)
        await self.feed.run()

    def _feed_state(self, state: str, detail: str | None) -> None:
        # Back after an outage: what changed meanwhile may predate the resumed feed.
        if state == "connected" and self._feed_lost:
            self.load()
        self._feed_lost = state != "connected"

    @on(EventsArrived)
    def _audit(self, message: EventsArrived) -> None:
        try:
            if message.feed == self.feed_name:
                message.stop()
                self.load()
        finally:
            message.handled.set()

    @work(exclusive=True, group="item-detail")
    async def load(self) -> None:
        try:
            item = await self.console.client.todo(self.item_id)
        except OpsbusError as exc:
            self.query_one("#item-title", Static).update(
                Text(f"item {self.item_id}: {exc.detail}", style="bold red"))
            self.loaded = True
            return
        self.item = item
        self.query_one("#item-title", Static).update(
            Text(f"#{item['id']} {item['title']}  [{item['queue']}]", style="bold"))
        resolution = item.get("resolution") or {}
        now = self.console.now()
        replace_rows(self.query_one("#fields", DataTable), [
            (name, (Text(name, style="bold"), _cell(value))) for name, value in (
                ("state", item["state"]), ("owner", item.get("owner")),
                ("priority", item.get("priority")), ("key", item["key"]),
                ("count", item["count"]),
                ("first seen", f"{age_since(item['first_seen'], now)} ago"),
                ("last seen", f"{age_since(item['last_seen'], now)} ago"),
                ("lease until", item.get("lease_expires")),
                ("snoozed until", item.get("snoozed_until")),
                ("resolved by", resolution.get("by")), ("resolution", resolution.get("note")),
            ) if value is not None])
        # History only grows and is oldest first, so new entries append below the cursor.
        replace_rows(self.query_one("#history", DataTable), [
            (str(index), (f"{age_since(entry.get('at'), now)} ago", entry.get("action", ""),
                          entry.get("operator") or "-", history_note(entry)))
            for index, entry in enumerate(item.get("history", []))])
        replace_rows(self.query_one("#item-events", DataTable), [
            (str(e["seq"]), (str(e["seq"]), short_time(e.get("time")), e.get("type", ""),
                             e.get("source", ""), e.get("subject") or ""))
            for e in reversed(item.get("events", []))])
        self.query_one("#events-title", Static).update(
            f"EVENTS — {item['count']} grouped under key {item['key']}")
        self.refresh_bindings()
        self.loaded = True

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

    # -- quick actions --------------------------------------------------------------------
    @work(group="item-op")
    async def action_quick_action(self) -> None:
        item = self.item
        if item is None or not item.get("actions"):
            self.notify("the item's queue permits no quick actions", severity="warning")
            return
        name = await self.app.push_screen_wait(ActionPicker(
            f"Quick actions for #{item['id']} {item['title']} [{item['queue']}]",
            item["actions"]))
        if not name:
            return
        try:
            stored = await self.console.client.event(int(item["event_seq"]))
        except OpsbusError as exc:
            self.notify(f"cannot load event {item['event_seq']}: {exc.detail}",
                        severity="error")
            return

        async def run(params: dict[str, Any]) -> Any:
            return await self.console.client.run_todo_action(
                item["id"], name, self.console.operator, params)

        answer = await self.app.push_screen_wait(EditorModal(
            f"Run {name} on item #{item['id']} — parameters override the fields of event "
            f"seq {stored['seq']}; ctrl+s runs it, escape cancels", action_params(
                stored["event"]), run))
        if not answer:
            return
        self.load()
        result = answer.get("result")
        job = answer.get("job") or {}
        if result is None:
            self.notify(f"{name} is still running (job {job.get('id')}); its result will "
                        "appear in the history", timeout=5)
        elif str(result["event"].get("type", "")).endswith("succeeded"):
            self.notify(f"{name} succeeded: result seq {result['seq']}", timeout=4)
        else:
            self.notify(f"{name} failed: result seq {result['seq']}", severity="error")


def history_note(entry: dict[str, Any]) -> str:
    """The NOTE cell of a history entry; a quick action says which one and how it went."""
    detail = entry.get("detail") or {}
    if entry.get("action") == "actioned" and detail.get("action"):
        status = f" ({detail['status']})" if detail.get("status") is not None else ""
        outcome = "ok" if detail.get("ok") else "failed"
        return f"{detail['action']} {outcome}{status} → seq {entry.get('event_seq')}"
    return str(entry.get("note") or "")
