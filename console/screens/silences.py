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
from console.format import age, parse_time
from console.models.silences import matcher_text
from console.screens.base import ConsoleScreen
from console.widgets.columns import Column
from console.widgets.confirm import ConfirmModal
from console.widgets.nav_table import NavTable
from console.widgets.silence_dialog import SilenceDialog


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
        self.ready = False
        """The silences were read at least once (or found unavailable)."""

    def compose_body(self) -> Iterable[Widget]:
        yield Static("SILENCES", id="silences-title", classes="pane-title")
        yield NavTable(id="silences", columns=(
            Column("ID", 4), Column("MATCHER", flex=2, min=12), Column("QUEUE", 12),
            Column("AUTHOR", 10), Column("LEFT", 6), Column("COMMENT", flex=2, min=10)))

    def on_mount(self) -> None:
        self.query_one(NavTable).fit()
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
            self.ready = True
            return
        except OpsbusError as exc:
            title.update(Text(f"cannot load silences: {exc.detail}", style="red"))
            self.ready = True
            return
        table = self.query_one(DataTable)
        table.clear()
        self.silences = {int(s["id"]): s for s in silences}
        now = self.console.now()
        for s in silences:
            # Counted on the console's clock, like every other age it shows.
            ends = parse_time(s.get("ends_at"))
            left = ("ended" if not s.get("active") else
                    age((ends - now).total_seconds()) if ends else age(s.get("remaining_s")))
            table.add_row(str(s["id"]), matcher_text(s.get("matcher") or {}),
                          s.get("queue") or "any", s.get("author", ""),
                          Text(left, style="" if s.get("active") else "dim"),
                          s.get("comment", ""), key=str(s["id"]))
        title.update(f"SILENCES — {len(self.silences)} "
                     f"{'in total' if self.show_all else 'active'}")
        self.ready = True

    def _current(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.silences.get(int(key)) if key is not None else None

    @work(group="silence-new")
    async def action_new(self) -> None:
        answer = await self.app.push_screen_wait(SilenceDialog(self.console.client))
        if not answer:
            return
        for matcher in answer["matchers"]:
            try:
                await self.console.client.add_silence(
                    matcher=matcher, duration=answer["duration"], comment=answer["comment"],
                    operator=self.console.operator,
                    **({"queue": answer["queue"]} if answer["queue"] else {}))
            except OpsbusError as exc:
                self.notify(f"cannot add the silence: {exc.detail}", severity="error")
        self.console.silences_changed()
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
