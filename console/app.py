"""OpsbusConsole: the Textual app — modes per view, `:` commands, connection state, the
on-call watch (badge, toasts, bell) and what happens to errors nobody expected."""

from __future__ import annotations

import getpass
import logging
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import WorkerFailed

from broker.client import OpsbusClient
from broker.errors import Forbidden, NotFound, OpsbusError, Unauthorized
from broker.numbers import whole_number_or
from console.commands import ConsoleCommands
from console.faults import FaultBudget
from console.feed import EventFeed, head_seq
from console.messages import ConnectionChanged, EventsArrived
from console.models.items import Item, is_critical
from console.models.oncall import OnCall
from console.models.queues import QueuesModel
from console.models.silences import SilencesModel
from console.screens.catalog import CatalogScreen
from console.screens.causal import CausalScreen
from console.screens.deliveries import DeliveriesScreen
from console.screens.detail import EventDetailScreen, ItemDetailScreen
from console.screens.emit import EmitScreen
from console.screens.help import HelpScreen
from console.screens.item_actions import AUDIT_FILTER
from console.screens.queues import QueuesScreen
from console.screens.silences import SilencesScreen
from console.screens.stream import StreamScreen
from console.widgets.command_line import CommandLine
from console.widgets.event_table import WINDOW

log = logging.getLogger("console")

SAMPLE_EVENTS = Path(__file__).resolve().parent.parent / "sample_events"
"""Templates for the Emit workbench, when running from a source tree."""

PROBE_S = 3.0
"""Seconds between health probes of the broker."""
COUNTS_AFTER_S = 0.3
"""A burst of item changes refreshes the queue counts once, this long after the first."""
SILENCES_EVERY_S = 30.0
"""Silences end by themselves: the active ones are re-read this often."""
VIEWS = ("queues", "stream", "deliveries", "emit", "silences", "catalog")
HOME = "queues"


def auth_hint(exc: OpsbusError) -> str:
    """A 401/403 as the person at the console can act on it."""
    if isinstance(exc, Unauthorized):
        return (f"the broker refused the token ({exc.detail}): give one with --token, "
                "OPSBUS_TOKEN or a context's token in console.toml")
    if isinstance(exc, Forbidden):
        return f"the token lacks a permission for this ({exc.detail})"
    return exc.detail


class OpsbusConsole(App[None]):
    """The opsbus terminal console. All broker access goes through `self.client`."""

    CSS_PATH = "app.tcss"
    TITLE = "opsbus console"
    MODES: ClassVar[dict[str, Any]] = {
        "stream": StreamScreen, "queues": QueuesScreen, "deliveries": DeliveriesScreen,
        "emit": EmitScreen, "silences": SilencesScreen, "catalog": CatalogScreen,
    }
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(":", "command_line", "Command"),
        Binding("?", "help", "Help"),
        Binding("1", "view('queues')", "Queues", show=False),
        Binding("2", "view('stream')", "Stream", show=False),
        Binding("3", "view('deliveries')", "Deliveries", show=False),
        Binding("4", "view('emit')", "Emit", show=False),
        Binding("5", "view('silences')", "Silences", show=False),
        Binding("6", "view('catalog')", "Catalog", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    # `var`: the status bars watch these and redraw their one line; a `reactive` on the
    # app would repaint the whole screen at each change (the badge changes with every
    # critical item that opens, flips or is claimed).
    connection: var[str] = var("connecting")
    connection_detail: var[str | None] = var(None)
    unclaimed_critical: var[int] = var(0)
    """Open, unsnoozed critical items in every queue (the status bar's badge)."""
    auth_problem: var[str | None] = var(None)
    """The broker refused our token (401) or a permission (403): said on every screen."""

    def __init__(self, url: str, *, token: str | None = None, operator: str | None = None,
                 context: str | None = None, screen: str = HOME, read_only: bool = False,
                 now: Callable[[], datetime] | None = None, window: int = WINDOW,
                 batch_window_s: float = 0.1, templates_dir: Path | None = SAMPLE_EVENTS,
                 initial_filter: str | None = None, bell: bool = True,
                 log_path: Path | None = None, screenshot_dir: Path | None = None,
                 tick_s: float = 5.0) -> None:
        super().__init__()
        self.client = OpsbusClient(url, token)
        self.operator = operator or getpass.getuser()
        self.context_name = context
        self.broker_label = context or url
        """A context's name, else the URL (what the status bar shows)."""
        self.initial_mode = screen if screen in VIEWS else HOME
        self.read_only = read_only
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        """The clock used for ages; tests fix it so screenshots do not change."""
        self.window = window
        self.batch_window_s = batch_window_s
        self.templates_dir = templates_dir
        self.initial_filter = initial_filter
        self.bell_on = bell
        """Ring the terminal bell when a critical or high item opens (`:bell off`)."""
        self.bells = 0
        """How often the bell rang."""
        self.log_path = log_path
        self.screenshot_dir = screenshot_dir or Path.cwd()
        self.tick_s = tick_s
        """How often relative times ("5m ago") are redrawn."""
        self.faults = FaultBudget()
        self.queues = QueuesModel(self.operator, self.now)
        self.oncall = OnCall(self.now)
        self.oncall.announce = self._announce
        self.silences = SilencesModel()
        self._item_listeners: list[Callable[[Item], None]] = []
        self._feed_states: dict[str, str] = {}
        self._history: list[str] = []
        self._counts_timer: Timer | None = None
        self.todo_feed: EventFeed | None = None

    @property
    def known_queues(self) -> list[str]:
        """Queue names (for the command palette)."""
        return sorted(self.queues.queues)

    async def on_mount(self) -> None:
        await self.client.open()
        self.oncall.observe(self._oncall_changed)
        await self.switch_mode(self.initial_mode)
        # Views without a live feed still need to show a lost broker.
        self.set_interval(PROBE_S, self._probe)
        self.set_interval(SILENCES_EVERY_S, self.silences_changed)
        self.set_interval(15.0, self._oncall_changed)  # snoozes end, the badge follows
        self._probe()
        self._learn_identity()
        self._watch_items()
        self.silences_changed()

    @work(exclusive=True, group="whoami")
    async def _learn_identity(self) -> None:
        """The broker records the token's name as the operator: a named token's console
        is that operator ("mine" lists its claims). An admin token (the local one) may
        act for the person given with --operator or the login name, and keeps it."""
        try:
            me = await self.client.whoami()
        except OpsbusError:
            return  # the probe and the feeds show why the broker cannot be asked
        if "admin" not in me.get("scopes", []) and me.get("name"):
            self.operator = self.queues.operator = str(me["name"])
            self.reload_items()

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

    # -- errors nobody expected ------------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        """A failed worker is logged and shown and the console carries on (its own
        message loop is intact); anything else, or too many failures, is a crash."""
        cause = error.error if isinstance(error, WorkerFailed) else error
        if isinstance(error, WorkerFailed) and isinstance(cause, Exception):
            if self._tolerate(cause, "a background task"):
                return
        log.critical("the console crashed", exc_info=cause)
        super()._handle_exception(error)

    def _tolerate(self, error: Exception, where: str) -> bool:
        """Log and show an unexpected error; False when it is time to give up."""
        if isinstance(error, Unauthorized | Forbidden):
            self.auth_problem = auth_hint(error)
        if isinstance(error, OpsbusError):
            log.warning("%s: %s", where, error.detail)
            self.notify(auth_hint(error), severity="error", timeout=8)
            return True
        log.error("unexpected error in %s", where, exc_info=error)
        if not self.faults.tolerate():
            return False
        where_logged = f" — details in {self.log_path}" if self.log_path else ""
        self.notify(f"unexpected error: {type(error).__name__}: {error}{where_logged}",
                    title="opsbus console", severity="error", timeout=10)
        return True

    async def _dispatch_action(self, namespace: DOMNode, action_name: str, params: Any
                               ) -> bool:
        # No key may end the console: an action that fails is reported, not fatal.
        try:
            return await super()._dispatch_action(namespace, action_name, params)
        except Exception as exc:
            if not self._tolerate(exc, f"the {action_name} action"):
                raise
            return True

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

    # -- items: one audit feed for every view -------------------------------------------
    @work(exclusive=True, group="items-feed")
    async def _watch_items(self) -> None:
        """Load what is open now, then follow every item change (audit events)."""
        after = await head_seq(self.client)
        try:
            await self.oncall.load(self.client)
            await self.queues.load_queues(self.client)
            await self.queues.load_items(self.client)
        except OpsbusError as exc:
            if isinstance(exc, Unauthorized | Forbidden):
                self.auth_problem = auth_hint(exc)
            self.queues.failed(f"cannot load queues: {auth_hint(exc)}")
            after = None
        # Changes after `after` arrive as audit events; replayed ones are harmless (an
        # item is only replaced by a newer version of itself).
        self.todo_feed = EventFeed("todos", self.client, self, after=after,
                                   filter=AUDIT_FILTER, window_s=self.batch_window_s,
                                   on_state=self._todo_feed_state)
        await self.todo_feed.run()

    def _todo_feed_state(self, state: str, detail: str | None) -> None:
        if state == "connected" and self.queues.status == "error":
            self.reload_items()

    @work(exclusive=True, group="items-reload")
    async def reload_items(self) -> None:
        try:
            await self.queues.load_queues(self.client)
            await self.queues.load_items(self.client)
        except OpsbusError as exc:
            self.queues.failed(f"cannot load: {auth_hint(exc)}")

    @on(EventsArrived)
    def _items_arrived(self, message: EventsArrived) -> None:
        try:
            if message.feed != "todos":
                return
            message.stop()
            # Each model tells its observers once per batch, not once per item.
            changed = urgent = False
            for _, event in message.events:
                data = event.get("data")
                item = data.get("item") if isinstance(data, dict) else None
                if isinstance(item, dict) and "id" in item:
                    urgent |= self.oncall.apply(item, notify=False)
                    changed |= self._item_changed(item)
            if urgent:
                self.oncall.changed()
            if changed:
                self.queues.changed()
            self._schedule_counts()
        finally:
            message.handled.set()

    def _item_changed(self, item: Item) -> bool:
        for listener in list(self._item_listeners):
            listener(item)
        return self.queues.apply(item)

    def item_changed(self, item: Item) -> None:
        """The broker answered an operation with this item: show it everywhere now."""
        self.oncall.apply(item)
        if self._item_changed(item):
            self.queues.changed()
        self._schedule_counts()

    def listen_items(self, listener: Callable[[Item], None]) -> Callable[[], None]:
        """Hear of every item change; returns the way to stop."""
        self._item_listeners.append(listener)
        return lambda: self._item_listeners.remove(listener)

    def _schedule_counts(self) -> None:
        if self._counts_timer is None:
            def fire() -> None:
                self._counts_timer = None
                self._refresh_counts()
            self._counts_timer = self.set_timer(COUNTS_AFTER_S, fire)

    @work(exclusive=True, group="queue-counts")
    async def _refresh_counts(self) -> None:
        try:
            await self.queues.load_queues(self.client)
        except OpsbusError:
            pass  # the status bar already says the broker is away

    @work(exclusive=True, group="silences")
    async def silences_changed(self) -> None:
        """Silences were added or ended: re-read the active ones."""
        await self.silences.load(self.client)

    # -- paging the on-call engineer ------------------------------------------------------
    def _oncall_changed(self) -> None:
        self.unclaimed_critical = self.oncall.unclaimed_critical

    def _announce(self, item: Item) -> None:
        priority = str(item.get("priority") or "").upper()
        self.notify(f"#{item['id']} {item['title']}  [{item['queue']}]",
                    title=f"new {priority} item", timeout=12,
                    severity="error" if is_critical(item) else "warning")
        if self.bell_on:
            self.bells += 1
            self.bell()

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
        self.push_screen(CommandLine(self.known_queues), self._command_entered)

    async def _command_entered(self, text: str | None) -> None:
        if text:
            try:
                await self.run_command(text)
            except Exception as exc:  # a typed command never ends the console
                if not self._tolerate(exc, f"the command :{text}"):
                    raise

    def open_event(self, seq: int) -> None:
        self.push_screen(EventDetailScreen(seq))

    def open_item(self, item_id: int) -> None:
        self.push_screen(ItemDetailScreen(item_id))

    @work(group="open-item")
    async def open_item_checked(self, item_id: int) -> None:
        """`:item N`: open the item, or say that there is none."""
        try:
            await self.client.todo(item_id)
        except NotFound:
            self.notify(f"no item {item_id}", severity="error")
            return
        except OpsbusError as exc:
            self.notify(f"cannot load item {item_id}: {auth_hint(exc)}", severity="error")
            return
        self.open_item(item_id)

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

    # -- screenshots: the working directory, and why a save failed --------------------------
    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        return super().deliver_screenshot(filename, path or str(self.screenshot_dir),
                                          time_format)

    @on(events.DeliveryFailed)
    def _screenshot_failed(self, event: events.DeliveryFailed) -> None:
        if event.name == "screenshot":
            event.prevent_default()  # Textual's own notice does not say why
            error = getattr(event, "exception", None)
            why = getattr(error, "strerror", None) or str(error or "unknown error")
            where = getattr(error, "filename", None) or self.screenshot_dir
            self.notify(f"cannot save the screenshot to {where}: {why}",
                        title="Screenshot", severity="error")

    async def run_command(self, text: str) -> None:
        """Run one `:` command: `stream EXPR`, `queue NAME [mine|unclaimed|all]`,
        `item ID`, `event SEQ`, `causal SEQ`, `emit`, `deliveries`, `silences`, `catalog`,
        `bell on|off`, `help`, `quit`."""
        word, _, argument = text.strip().partition(" ")
        word, argument = word.lower(), argument.strip()
        if word in ("q", "quit", "q!"):
            self.exit()
        elif word in ("stream", "s", "events"):
            screen = await self.show_view("stream")
            if argument and isinstance(screen, StreamScreen):
                screen.apply_command(argument)
        elif word in ("queue", "queues", "todo", "todos", "home"):
            screen = await self.show_view("queues")
            if argument and isinstance(screen, QueuesScreen):
                try:
                    words = shlex.split(argument)
                except ValueError as exc:
                    self.notify(f":queue {argument}: {exc}", severity="error")
                    return
                screen.apply_command(words)
        elif word in ("item", "event", "seq", "causal", "tree") and (
                number := whole_number_or(argument, -1)) >= 0:
            if word == "item":
                self.open_item_checked(number)
            elif word in ("causal", "tree"):
                self.open_causal(number)
            else:
                self.open_event(number)
        elif word in ("item", "event", "seq", "causal", "tree"):
            self.notify(f":{word} needs a number, e.g. :{word} 42", severity="error")
        elif word in ("deliveries", "dlq", "emit", "silences", "silence", "catalog"):
            await self.show_view({"dlq": "deliveries", "silence": "silences"}.get(word, word))
        elif word == "bell":
            self.bell_on = argument.lower() not in ("off", "no", "0", "false")
            self.notify(f"the bell is {'on' if self.bell_on else 'off'}", timeout=3)
        elif word in ("help", "h"):
            self.action_help()
        else:
            self.notify(f"unknown command :{word} (try :help)", severity="error")
