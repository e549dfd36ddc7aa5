"""OpsbusConsole: the Textual app — modes per view, `:` commands, connection state."""

from __future__ import annotations

import getpass
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from broker.client import OpsbusClient
from broker.errors import OpsbusError
from console.commands import ConsoleCommands
from console.messages import ConnectionChanged
from console.screens.causal import CausalScreen
from console.screens.deliveries import DeliveriesScreen
from console.screens.detail import EventDetailScreen, ItemDetailScreen
from console.screens.emit import EmitScreen
from console.screens.help import HelpScreen
from console.screens.queues import QueuesScreen
from console.screens.silences import SilencesScreen
from console.screens.stream import StreamScreen
from console.widgets.command_line import CommandLine
from console.widgets.event_table import WINDOW

SAMPLE_EVENTS = Path(__file__).resolve().parent.parent / "sample_events"
"""Templates for the Emit workbench, when running from a source tree."""

PROBE_S = 3.0
"""Seconds between health probes of the broker."""
VIEWS = ("stream", "queues", "deliveries", "emit", "silences")


class OpsbusConsole(App[None]):
    """The opsbus terminal console. All broker access goes through `self.client`."""

    CSS_PATH = "app.tcss"
    TITLE = "opsbus console"
    MODES: ClassVar[dict[str, Any]] = {
        "stream": StreamScreen, "queues": QueuesScreen, "deliveries": DeliveriesScreen,
        "emit": EmitScreen, "silences": SilencesScreen,
    }
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(":", "command_line", "Command"),
        Binding("?", "help", "Help"),
        Binding("1", "view('stream')", "Stream", show=False),
        Binding("2", "view('queues')", "Queues", show=False),
        Binding("3", "view('deliveries')", "Deliveries", show=False),
        Binding("4", "view('emit')", "Emit", show=False),
        Binding("5", "view('silences')", "Silences", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    connection: reactive[str] = reactive("connecting")
    connection_detail: reactive[str | None] = reactive(None)

    def __init__(self, url: str, *, token: str | None = None, operator: str | None = None,
                 context: str | None = None, screen: str = "stream", read_only: bool = False,
                 now: Callable[[], datetime] | None = None, window: int = WINDOW,
                 batch_window_s: float = 0.05, templates_dir: Path | None = SAMPLE_EVENTS,
                 initial_filter: str | None = None) -> None:
        super().__init__()
        self.client = OpsbusClient(url, token)
        self.operator = operator or getpass.getuser()
        self.context_name = context
        self.broker_label = context or url
        """A context's name, else the URL (what the status bar shows)."""
        self.initial_mode = screen if screen in VIEWS else "stream"
        self.read_only = read_only
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        """The clock used for ages; tests fix it so screenshots do not change."""
        self.window = window
        self.batch_window_s = batch_window_s
        self.templates_dir = templates_dir
        self.initial_filter = initial_filter
        self.known_queues: list[str] = []
        """Queue names seen by the Queues screen (for the command palette)."""
        self._feed_states: dict[str, str] = {}
        self._history: list[str] = []

    async def on_mount(self) -> None:
        await self.client.open()
        await self.switch_mode(self.initial_mode)
        # Views without a live feed still need to show a lost broker.
        self.set_interval(PROBE_S, self._probe)
        self._probe()

    @work(exclusive=True, group="probe")
    async def _probe(self) -> None:
        try:
            await self.client.request("GET", "/readyz", timeout=PROBE_S)
        except OpsbusError as exc:
            self.post_message(ConnectionChanged("probe", "disconnected", exc.detail))
        else:
            self.post_message(ConnectionChanged("probe", "connected"))

    async def on_unmount(self) -> None:
        await self.client.close()

    # -- connection state -------------------------------------------------------------
    @on(ConnectionChanged)
    def _connection_changed(self, message: ConnectionChanged) -> None:
        self._feed_states[message.feed] = message.state
        self.connection_detail = message.detail if message.state != "connected" else None
        self._update_connection()

    def forget_feed(self, feed: str) -> None:
        """A feed that stopped for good (its screen closed) no longer counts as down."""
        if self._feed_states.pop(feed, "connected") != "connected":
            self._update_connection()

    def _update_connection(self) -> None:
        down = [f for f, s in self._feed_states.items() if s != "connected"]
        self.connection = "disconnected" if down else "connected"
        if not down:
            self.connection_detail = None

    # -- navigation -------------------------------------------------------------------
    async def action_view(self, name: str) -> None:
        await self.show_view(name)

    async def show_view(self, name: str) -> Screen[Any]:
        """Switch to a top-level view (its screen keeps running while hidden)."""
        if name != self.current_mode:
            self._history.append(self.current_mode)
            del self._history[:-20]
            await self.switch_mode(name)
        while len(self.screen_stack) > 1:
            self.pop_screen()
        return self.screen

    async def action_back(self) -> None:
        """Escape: close the pushed screen, else return to the previous view."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self._history:
            await self.switch_mode(self._history.pop())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_command_line(self) -> None:
        self.push_screen(CommandLine(), self._command_entered)

    async def _command_entered(self, text: str | None) -> None:
        if text:
            await self.run_command(text)

    def open_event(self, seq: int) -> None:
        self.push_screen(EventDetailScreen(seq))

    def open_item(self, item_id: int) -> None:
        self.push_screen(ItemDetailScreen(item_id))

    def open_causal(self, seq: int) -> None:
        self.push_screen(CausalScreen(seq))

    async def open_emit(self, *, seq: int | None = None,
                        event: dict[str, Any] | None = None) -> None:
        screen = await self.show_view("emit")
        if isinstance(screen, EmitScreen):
            if event is not None:
                screen.edit(event)
            elif seq is not None:
                screen.edit_seq(seq)

    def copy_text(self, text: str, what: str) -> None:
        """Copy to the terminal clipboard (OSC 52) and say so."""
        self.copy_to_clipboard(text)
        self.notify(f"copied {what} to the clipboard ({len(text):,} characters)", timeout=3)

    async def run_command(self, text: str) -> None:
        """Run one `:` command: `stream EXPR`, `queue NAME [mine|unclaimed|all]`,
        `item ID`, `event SEQ`, `causal SEQ`, `emit`, `deliveries`, `silences`, `help`,
        `quit`."""
        word, _, argument = text.strip().partition(" ")
        word, argument = word.lower(), argument.strip()
        if word in ("q", "quit", "q!"):
            self.exit()
        elif word in ("stream", "s", "events"):
            screen = await self.show_view("stream")
            if argument and isinstance(screen, StreamScreen):
                screen.apply_command(argument)
        elif word in ("queue", "queues", "todo", "todos"):
            screen = await self.show_view("queues")
            if argument and isinstance(screen, QueuesScreen):
                screen.apply_command(shlex.split(argument))
        elif word in ("item", "event", "seq", "causal", "tree") and argument.isdigit():
            number = int(argument)
            if word == "item":
                self.open_item(number)
            elif word in ("causal", "tree"):
                self.open_causal(number)
            else:
                self.open_event(number)
        elif word in ("item", "event", "seq", "causal", "tree"):
            self.notify(f":{word} needs a number, e.g. :{word} 42", severity="error")
        elif word in ("deliveries", "dlq", "emit", "silences", "silence"):
            await self.show_view({"dlq": "deliveries", "silence": "silences"}.get(word, word))
        elif word in ("help", "h"):
            self.action_help()
        else:
            self.notify(f"unknown command :{word} (try :help)", severity="error")
