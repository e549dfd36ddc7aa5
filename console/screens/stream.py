"""The Stream screen: live events with follow, pause, CESQL filter or free-text search,
the bus's own events on or off, rate and jump to seq. Its state is a StreamModel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from broker.errors import BadRequest, OpsbusError
from broker.numbers import whole_number_or
from console.feed import EventFeed
from console.messages import EventsArrived, FilterSubmitted, FilterValidated, StreamCounters
from console.models.stream import Query, StreamModel
from console.screens.base import ConsoleScreen
from console.widgets.event_table import EventTable
from console.widgets.filter_bar import FilterBar
from console.widgets.note import NoteModal

INITIAL_ROWS = 200
"""Events loaded from the store when the screen opens or the filter changes."""
OLDER_PAGE = 200
"""Events loaded when the cursor goes above the oldest row held."""


class StreamCounter(Static):
    """The line above the table: mode, totals, held events, rate, what is asked for."""

    DEFAULT_CSS = "StreamCounter { height: 1; padding: 0 1; background: $boost; }"

    def show(self, c: StreamCounters, model: StreamModel) -> None:
        line = Text()
        if c.paused:
            line.append(" ❚❚ PAUSED ", style="bold reverse yellow")
            line.append(f"  {c.held:,} new while paused", style="bold yellow")
        elif c.following:
            line.append(" ▶ FOLLOW ", style="bold reverse green")
        else:
            line.append(" ■ BROWSE ", style="bold reverse")
        line.append(f"   {c.total:,} received   {c.rate:,.0f}/s   ")
        line.append(model.query.describe(), style="dim")
        if model.warning:
            line.append(f"   ⚠ {model.warning}", style="bold yellow")
        self.update(line, layout=False)  # one line high whatever it says


class StreamScreen(ConsoleScreen):
    """Events as they are committed, newest at the bottom."""

    HELP_TITLE = "Stream"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space,p", "pause", "Pause/resume"),
        Binding("f", "follow", "Follow"),
        Binding("/", "focus_filter", "Filter"),
        Binding("o", "toggle_own", "Own events"),
        Binding("g", "jump", "Jump to seq", show=False),
        Binding("t", "causal", "Causal tree", show=False),
        Binding("e", "to_emit", "Edit & emit copy", show=False),
        Binding("ctrl+l", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model = StreamModel(self.console.window)
        self.feed: EventFeed | None = None
        self.live = False
        """The live feed is connected: what commits from now on will be shown."""

    def compose_body(self) -> Iterable[Widget]:
        yield FilterBar(id="filter")
        yield StreamCounter(id="counter")
        yield EventTable(window=self.console.window, id="events")

    @property
    def table(self) -> EventTable:
        return self.query_one(EventTable)

    @property
    def ready(self) -> bool:
        return self.model.status != "loading"

    @property
    def expression(self) -> str:
        return self.model.query.expression

    def on_mount(self) -> None:
        self.table.focus()
        self.set_interval(1.0, self._post_counters)
        self.restart(self.console.initial_filter or "")

    # -- loading and live feed ------------------------------------------------------
    def restart(self, expression: str, hide_own: bool | None = None) -> None:
        """(Re)load the newest matching events and follow the stream with `expression`."""
        hide = self.model.query.hide_own if hide_own is None else hide_own
        self.model.ask(Query(expression, hide))
        self.query_one(FilterBar).set_expression(expression)
        self._load_and_follow(self.model.query)

    @work(exclusive=True, group="stream-feed")
    async def _load_and_follow(self, query: Query) -> None:
        client = self.console.client
        after = self.feed.after if self.feed else None
        try:
            page = await client.events(limit=INITIAL_ROWS, order="desc", filter=query.cesql,
                                       q=query.text)
        except BadRequest as exc:  # the expression itself is wrong: nothing to follow
            self.table.clear()
            self.model.status, self.model.problem = "error", exc.detail
            self.table.empty_text = "the filter is not valid CESQL (see the filter bar)"
            self.notify("the filter is not valid CESQL: nothing is shown until it is "
                        "fixed (see the filter bar)", severity="error")
            return
        except OpsbusError as exc:
            self._failed(exc)
            page = {"events": []}
        rows = [(e["seq"], e["event"]) for e in reversed(page["events"])]
        self.table.clear()
        self.table.set_following(True)
        self.table.append(rows)
        self.model.reset()
        self.table.empty_text = self._empty_text()
        # Drawn now rather than through a message: once the screen says it is ready, its
        # counter line says what was loaded (a test's picture must not catch it blank).
        self._draw_counters()
        if self.model.status == "loading":
            self.model.status = "ready"
        # The store answered up to its head: start right after the newest row, or where
        # the previous feed stopped when nothing matched.
        start = rows[-1][0] if rows else (after if after is not None else 0)
        self.live = False
        self.feed = EventFeed("stream", client, self, after=start, filter=query.cesql,
                              text=query.text, window_s=self.console.batch_window_s,
                              on_state=self._feed_state)
        try:
            await self.feed.run()
        except OpsbusError as exc:
            self._failed(exc)

    def _feed_state(self, state: str, detail: str | None) -> None:
        self.live = state == "connected"

    def _failed(self, exc: OpsbusError) -> None:
        self.model.status, self.model.problem = "error", exc.detail
        self.table.empty_text = f"cannot load events: {exc.detail}"
        self.notify(f"cannot load events: {exc.detail}", severity="error")

    def _empty_text(self) -> str:
        query = self.model.query
        if self.model.warning:
            return f"no events: {self.model.warning}"
        if query.text:
            return f"no event mentions {query.text!r} yet (type, source, subject, data)"
        if query.expression:
            return f"no event matches {query.expression!r} yet"
        return "no events yet"

    @on(EventsArrived)
    def _arrived(self, message: EventsArrived) -> None:
        try:
            if message.feed != "stream":
                return
            message.stop()
            shown = self.model.arrived(message.events)
            if shown:
                self.table.append(shown)
            if self.is_current:
                self.post_message(self._counters())
        finally:
            message.handled.set()

    def _counters(self) -> StreamCounters:
        return self.model.counters(self.table.following)

    def _post_counters(self) -> None:
        if self.is_current:
            self.post_message(self._counters())

    @on(StreamCounters)
    def _show_counters(self, message: StreamCounters) -> None:
        self.query_one(StreamCounter).show(message, self.model)

    def _draw_counters(self) -> None:
        self.query_one(StreamCounter).show(self._counters(), self.model)

    # -- keys -----------------------------------------------------------------------
    def action_pause(self) -> None:
        if not self.model.paused:
            self.model.pause()
        else:
            self.resume()
        self._post_counters()

    @property
    def paused(self) -> bool:
        return self.model.paused

    @property
    def held_count(self) -> int:
        return self.model.held_count

    def resume(self) -> None:
        """Show what arrived while paused, or reload the newest rows after a gap."""
        rows = self.model.resume()
        if rows is None:
            self.restart(self.expression)
        else:
            self.table.append(rows)

    def action_follow(self) -> None:
        if self.model.paused:
            self.resume()
        self.table.set_following(True)
        self._post_counters()

    def action_toggle_own(self) -> None:
        """Show or hide the bus's own events (audit trail, deliveries, actions)."""
        self.restart(self.expression, hide_own=not self.model.query.hide_own)

    @on(EventTable.FollowChanged)
    def _follow_changed(self) -> None:
        self._post_counters()

    def filter_view(self) -> None:
        self.action_focus_filter()

    def action_focus_filter(self) -> None:
        self.query_one(FilterBar).input.focus()

    def action_clear_filter(self) -> None:
        self.restart("")

    @on(FilterValidated)
    def _validated(self, message: FilterValidated) -> None:
        message.stop()
        if message.expression == self.expression:
            self.model.warning = message.warning
            self.table.empty_text = self._empty_text()
            self._post_counters()

    @on(FilterSubmitted)
    def _filter_submitted(self, message: FilterSubmitted) -> None:
        message.stop()
        warning = self.query_one(FilterBar).warning
        if message.expression != self.expression:
            self.restart(message.expression)
        self.model.warning = warning
        if warning:
            self.notify(warning, severity="warning", timeout=6)
        self.table.empty_text = self._empty_text()
        self.table.focus()

    @on(EventTable.Selected)
    def _selected(self, message: EventTable.Selected) -> None:
        self.console.open_event(message.seq)

    @on(EventTable.OlderWanted)
    def _older(self, message: EventTable.OlderWanted) -> None:
        self._load_older(message.before)

    @work(exclusive=True, group="stream-older")
    async def _load_older(self, before: int) -> None:
        if before <= 1:
            return
        query = self.model.query
        try:
            page = await self.console.client.events(after=before, limit=OLDER_PAGE,
                                                    order="desc", filter=query.cesql,
                                                    q=query.text)
        except OpsbusError as exc:
            self.notify(f"cannot load older events: {exc.detail}", severity="error")
            return
        added = self.table.prepend([(e["seq"], e["event"]) for e in page["events"]])
        if not added:
            self.notify("no older events", timeout=2)
        self._post_counters()

    def action_jump(self) -> None:
        def check(text: str) -> str | None:
            return None if whole_number_or(text, -1) >= 0 else "a seq is a positive integer"

        def jump(text: str | None) -> None:
            if text and (seq := whole_number_or(text, -1)) >= 0:
                self.jump_to(seq)

        self.app.push_screen(NoteModal("Jump to seq", placeholder="e.g. 1234", check=check),
                             jump)

    @work(exclusive=True, group="stream-jump")
    async def jump_to(self, seq: int) -> None:
        """Show the event `seq` (loading its neighbourhood when it is not held)."""
        table = self.table
        index = table.index_of(seq)
        if index is None:
            query = self.model.query
            try:
                page = await self.console.client.events(after=max(0, seq - 1),
                                                        limit=OLDER_PAGE,
                                                        filter=query.cesql, q=query.text)
            except OpsbusError as exc:
                self.notify(f"cannot load seq {seq}: {exc.detail}", severity="error")
                return
            if not page["events"]:
                self.notify(f"no event at or after seq {seq}", severity="warning")
                return
            # The loaded page does not join up with live rows: hold live events until
            # the user resumes, which reloads the newest rows.
            self.model.pause()
            self.model.gap = True
            table.set_following(False)
            table.clear()
            table.append([(e["seq"], e["event"]) for e in page["events"]])
            index = 0
        table.set_following(False)
        table.move_to(index)
        self._post_counters()

    def action_causal(self) -> None:
        if self.table.selected_seq is not None:
            self.console.open_causal(self.table.selected_seq)

    async def action_to_emit(self) -> None:
        if self.table.selected_seq is not None:
            await self.console.open_emit(seq=self.table.selected_seq)

    def apply_command(self, argument: str) -> None:
        """`:stream EXPR` — apply a filter (or a free-text search) from the command line."""
        self.restart(argument)
        self.query_one(FilterBar).check(argument)

    def selected_event_seq(self) -> int | None:
        return self.table.selected_seq
