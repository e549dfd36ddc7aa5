"""The help screen: every key of every view, read from the bindings themselves."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _keys(bindings: list[BindingType]) -> list[tuple[str, str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding):
            rows.append((b.key, b.description or b.action, b.action))
        else:
            rows.append((b[0], b[2] if len(b) > 2 else b[1], b[1]))
    return rows


def _display_key(key: str) -> str:
    return " ".join(k.replace("ctrl+", "^") for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    """A table of keys per view; state-changing keys are left out in read-only mode."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; background: $background 60%; }
    HelpScreen > VerticalScroll { width: 100; max-width: 95%; height: 90%;
                                  border: thick $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,?", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._table())

    def _table(self) -> Table:
        from console.app import OpsbusConsole
        from console.screens.catalog import CatalogScreen
        from console.screens.causal import CausalScreen
        from console.screens.deliveries import DeliveriesScreen
        from console.screens.detail import EventDetailScreen, ItemDetailScreen
        from console.screens.emit import EmitScreen
        from console.screens.queues import QueuesScreen
        from console.screens.silences import SilencesScreen
        from console.screens.stream import StreamScreen
        from console.widgets.event_table import EventTable
        from console.widgets.nav_table import NavTable

        read_only = getattr(self.app, "read_only", False)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        sections = [
            ("Everywhere", OpsbusConsole.BINDINGS, frozenset[str]()),
            ("Tables", NavTable.BINDINGS, frozenset[str]()),
            ("Event list", EventTable.BINDINGS, frozenset[str]()),
        ]
        for screen in (QueuesScreen, StreamScreen, EventDetailScreen, ItemDetailScreen,
                       CausalScreen, EmitScreen, DeliveriesScreen, SilencesScreen,
                       CatalogScreen):
            sections.append((screen.HELP_TITLE, screen.BINDINGS, screen.MUTATING))
        for title, bindings, mutating in sections:
            table.add_row(Text(title, style="bold reverse"), "")
            for key, description, action in _keys(bindings):
                name = action.split("(")[0].removeprefix("app.")
                if read_only and name in mutating:
                    continue
                table.add_row(_display_key(key), description)
            table.add_row("", "")
        table.add_row(Text("Commands", style="bold reverse"), "")
        for command, meaning in (
            (":stream EXPR", "stream with a CESQL filter (:stream alone keeps it)"),
            (":queue NAME [mine|unclaimed|all]", "a queue's items (:queue * every queue)"),
            ("space, then c / d / z / s", "mark items, then claim, resolve, snooze or "
                                          "silence them all"),
            ("P  A  C  O", "sort items by priority, age, count, owner (again: reverse)"),
            (":bell on|off", "the bell for new critical and high items"),
            (":item ID  :event SEQ  :causal SEQ", "open an item, an event, its causal tree"),
            (":emit  :deliveries  :silences  :catalog", "the other views"),
            ("escape", "back to the previous screen or view"),
            ("ctrl+p", "command palette"),
        ):
            table.add_row(command, meaning)
        return table
