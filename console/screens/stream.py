"""The Stream screen: live events with follow, pause, CESQL filter, rate and jump to seq."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import Static

from broker.errors import OpsbusError
from console.feed import EventFeed
from console.messages import EventsArrived, FilterSubmitted, Row, StreamCounters
from console.screens.base import ConsoleScreen
from console.widgets.event_table import EventTable
from console.widgets.filter_bar import FilterBar
from console.widgets.note import NoteModal

INITIAL_ROWS = 200
"""Events loaded from the store when the screen opens or the filter changes."""
OLDER_PAGE = 200
"""Events loaded when the cursor goes above the oldest row held."""
RATE_WINDOW_S = 5.0


class StreamCounter(Static):
    """The line above the table: mode, totals, held events, rate, filter."""

    DEFAULT_CSS = "StreamCounter { height: 1; padding: 0 1; background: $boost; }"

    def show(self, c: StreamCounters, expression: str) -> None:
        line = Text()
        if c.paused:
            line.append(" ❚❚ PAUSED ", style="bold reverse yellow")
            line.append(f"  {c.held:,} new while paused", style="bold yellow")
        elif c.following:
            line.append(" ▶ FOLLOW ", style="bold reverse green")
        else:
            line.append(" ■ BROWSE ", style="bold reverse")
        line.append(f"   {c.total:,} received   {c.rate:,.0f}/s")
        line.append(f"   filter: {expression}" if expression else "   no filter",
                    style="dim" if not expression else "")
        self.update(line)


class StreamScreen(ConsoleScreen):
    """Events as they are committed, newest at the bottom."""

    HELP_TITLE = "Stream"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space,p", "pause", "Pause/resume"),
        Binding("f", "follow", "Follow"),
        Binding("/", "focus_filter", "Filter"),
        Binding("g", "jump", "Jump to seq"),
        Binding("t", "causal", "Causal tree"),
        Binding("e", "to_emit", "Edit & emit copy"),
        Binding("ctrl+l", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.expression = ""
        self.paused = False
        self.held: deque[Row] = deque()
        self.held_count = 0
        self.gap = False
        """The table no longer joins up with the live feed (jumped, or held overflowed)."""
        self.total = 0
        self._arrivals: deque[tuple[float, int]] = deque()
        self.feed: EventFeed | None = None
        self.loaded = False
        """True once the first page is on screen (tests wait for it)."""

    def compose_body(self) -> Iterable[Widget]:
        yield FilterBar(id="filter")
        yield StreamCounter(id="counter")
        yield EventTable(window=self.console.window, id="events")

    @property
    def table(self) -> EventTable:
        return self.query_one(EventTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.set_interval(1.0, self._post_counters)
        self.restart(self.console.initial_filter or "")

    # -- loading and live feed ------------------------------------------------------
    def restart(self, expression: str) -> None:
        """(Re)load the newest matching events and follow the stream with `expression`."""
        self.expression = expression
        self.query_one(FilterBar).set_expression(expression)
        self._load_and_follow(expression)

    @work(exclusive=True, group="stream-feed")
    async def _load_and_follow(self, expression: str) -> None:
        client = self.console.client
        after = self.feed.after if self.feed else None
        self.loaded = False
        try:
            page = await client.events(limit=INITIAL_ROWS, order="desc",
                                       filter=expression or None)
        except OpsbusError as exc:
            self.notify(f"cannot load events: {exc.detail}", severity="error")
            page = {"events": []}
        rows = [(e["seq"], e["event"]) for e in reversed(page["events"])]
        self.table.clear()
        self.table.set_following(True)
        self.table.append(rows)
        self.held.clear()
        self.held_count = 0
        self.gap = False
        self.loaded = True
        self._post_counters()
        # The store answered up to its head: start right after the newest row, or where
        # the previous feed stopped when nothing matched.
        start = rows[-1][0] if rows else (after if after is not None else 0)
        self.feed = EventFeed("stream", client, self, after=start, filter=expression or None,
                              window_s=self.console.batch_window_s)
        await self.feed.run()

    @on(EventsArrived)
    def _arrived(self, message: EventsArrived) -> None:
        try:
            if message.feed != "stream":
                return
            message.stop()
            count = len(message.events)
            self.total += count
            self._arrivals.append((time.monotonic(), count))
            if self.paused:
                self.held.extend(message.events)
                self.held_count += count
                while len(self.held) > self.table.window:
                    self.held.popleft()
                    self.gap = True
            else:
                self.table.append(message.events)
            self.post_message(self._counters())
        finally:
            message.handled.set()

    def _counters(self) -> StreamCounters:
        now = time.monotonic()
        while self._arrivals and self._arrivals[0][0] < now - RATE_WINDOW_S:
            self._arrivals.popleft()
        span = min(RATE_WINDOW_S, max(1.0, now - self._arrivals[0][0])) if self._arrivals else 1
        rate = sum(n for _, n in self._arrivals) / span
        return StreamCounters(self.total, self.held_count, rate, self.table.following,
                              self.paused)

    def _post_counters(self) -> None:
        self.post_message(self._counters())

    @on(StreamCounters)
    def _show_counters(self, message: StreamCounters) -> None:
        self.query_one(StreamCounter).show(message, self.expression)

    # -- keys -----------------------------------------------------------------------
    def action_pause(self) -> None:
        if not self.paused:
            self.paused = True
        else:
            self.resume()
        self._post_counters()

    def resume(self) -> None:
        """Show what arrived while paused, or reload the newest rows after a gap."""
        self.paused = False
        if self.gap:
            self.restart(self.expression)
            return
        self.table.append(list(self.held))
        self.held.clear()
        self.held_count = 0

    def action_follow(self) -> None:
        if self.paused:
            self.resume()
        self.table.set_following(True)
        self._post_counters()

    @on(EventTable.FollowChanged)
    def _follow_changed(self) -> None:
        self._post_counters()

    def filter_view(self) -> None:
        self.action_focus_filter()

    def action_focus_filter(self) -> None:
        self.query_one(FilterBar).input.focus()

    def action_clear_filter(self) -> None:
        self.restart("")

    @on(FilterSubmitted)
    def _filter_submitted(self, message: FilterSubmitted) -> None:
        message.stop()
        if message.expression != self.expression:
            self.restart(message.expression)
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
        try:
            page = await self.console.client.events(after=before, limit=OLDER_PAGE,
                                                    order="desc",
                                                    filter=self.expression or None)
        except OpsbusError as exc:
            self.notify(f"cannot load older events: {exc.detail}", severity="error")
            return
        added = self.table.prepend([(e["seq"], e["event"]) for e in page["events"]])
        if not added:
            self.notify("no older events", timeout=2)
        self._post_counters()

    def action_jump(self) -> None:
        def check(text: str) -> str | None:
            return None if text.isdigit() else "a seq is a positive integer"

        def jump(text: str | None) -> None:
            if text:
                self.jump_to(int(text))

        self.app.push_screen(NoteModal("Jump to seq", placeholder="e.g. 1234", check=check),
                             jump)

    @work(exclusive=True, group="stream-jump")
    async def jump_to(self, seq: int) -> None:
        """Show the event `seq` (loading its neighbourhood when it is not held)."""
        table = self.table
        index = table.index_of(seq)
        if index is None:
            try:
                page = await self.console.client.events(after=max(0, seq - 1),
                                                        limit=OLDER_PAGE,
                                                        filter=self.expression or None)
            except OpsbusError as exc:
                self.notify(f"cannot load seq {seq}: {exc.detail}", severity="error")
                return
            if not page["events"]:
                self.notify(f"no event at or after seq {seq}", severity="warning")
                return
            # The loaded page does not join up with live rows: hold live events until
            # the user resumes, which reloads the newest rows.
            self.paused, self.gap = True, True
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
        """`:stream EXPR` — apply a filter given on the command line."""
        self.restart(argument)

    def current_filter(self) -> str:
        return self.expression

    def selected_event_seq(self) -> int | None:
        return self.table.selected_seq

    def state(self) -> dict[str, Any]:
        """Counters for tests and the benchmark."""
        return {"rows": len(self.table.rows), "last_seq": self.table.last_seq,
                "held": self.held_count, "total": self.total}
