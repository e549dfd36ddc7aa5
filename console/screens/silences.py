"""The Silences screen: time-boxed mutes of matching events; add and expire them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from broker.errors import NotFound, OpsbusError
from console.format import age
from console.screens.base import ConsoleScreen
from console.widgets.columns import add_columns
from console.widgets.confirm import ConfirmModal
from console.widgets.note import NoteModal


def matcher_text(matcher: dict[str, Any]) -> str:
    if "key" in matcher:
        return f"key ~ {matcher['key']}"
    spec = matcher.get("filter")
    if isinstance(spec, dict) and set(spec) == {"sql"}:
        return str(spec["sql"])
    return str(spec)


class SilencesScreen(ConsoleScreen):
    """Active silences (or all with `a`): matcher, queue, who, why, time left."""

    HELP_TITLE = "Silences"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New silence"),
        Binding("x", "expire", "Expire"),
        Binding("a", "toggle_all", "Show expired"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]
    MUTATING = frozenset({"new", "expire"})

    def __init__(self) -> None:
        super().__init__()
        self.silences: dict[int, dict[str, Any]] = {}
        self.show_all = False
        self.loaded = False

    def compose_body(self) -> Iterable[Widget]:
        yield Static("SILENCES", id="silences-title", classes="pane-title")
        yield DataTable(id="silences", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        add_columns(self.query_one(DataTable), ("ID", 4), ("MATCHER", 40), ("QUEUE", 12),
                    ("AUTHOR", 10), ("LEFT", 6), ("COMMENT", 60))
        self.query_one(DataTable).focus()
        self.set_interval(10, self.reload)
        self.reload()

    @work(exclusive=True, group="silences")
    async def reload(self) -> None:
        title = self.query_one("#silences-title", Static)
        try:
            silences = await self.console.client.silences(all=self.show_all)
        except NotFound:
            title.update(Text("silences are not available on this broker", style="yellow"))
            self.loaded = True
            return
        except OpsbusError as exc:
            title.update(Text(f"cannot load silences: {exc.detail}", style="red"))
            self.loaded = True
            return
        table = self.query_one(DataTable)
        table.clear()
        self.silences = {int(s["id"]): s for s in silences}
        for s in silences:
            left = age(s.get("remaining_s")) if s.get("active") else "ended"
            table.add_row(str(s["id"]), matcher_text(s.get("matcher") or {}),
                          s.get("queue") or "any", s.get("author", ""),
                          Text(left, style="" if s.get("active") else "dim"),
                          s.get("comment", ""), key=str(s["id"]))
        title.update(f"SILENCES — {len(self.silences)} "
                     f"{'in total' if self.show_all else 'active'}")
        self.loaded = True

    def _current(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.silences.get(int(key)) if key is not None else None

    @work(group="silence-new")
    async def action_new(self) -> None:
        pattern = await self.app.push_screen_wait(NoteModal(
            "Silence items whose group key matches (glob; or sql: EXPR for an event filter)",
            placeholder="e.g. k8s.pod.crashloop/preview-*   or   sql: source = 'x'",
            required=True))
        if not pattern:
            return
        duration = await self.app.push_screen_wait(NoteModal(
            "For how long?", value="2h", required=True))
        if not duration:
            return
        comment = await self.app.push_screen_wait(NoteModal(
            "Why (comment)?", required=True))
        if not comment:
            return
        matcher: dict[str, Any] = (
            {"filter": pattern[4:].strip()} if pattern.startswith("sql:") else {"key": pattern})
        try:
            await self.console.client.add_silence(
                matcher=matcher, duration=duration, comment=comment,
                operator=self.console.operator)
        except OpsbusError as exc:
            self.notify(f"cannot add the silence: {exc.detail}", severity="error")
            return
        self.reload()

    @work(group="silence-expire")
    async def action_expire(self) -> None:
        silence = self._current()
        if silence is None:
            return
        if not await self.app.push_screen_wait(ConfirmModal(
                f"Expire silence {silence['id']} ({matcher_text(silence['matcher'])}) now?")):
            return
        try:
            await self.console.client.expire_silence(int(silence["id"]),
                                                     self.console.operator)
        except OpsbusError as exc:
            self.notify(f"cannot expire: {exc.detail}", severity="error")
            return
        self.reload()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self.reload()

    def action_reload(self) -> None:
        self.reload()
