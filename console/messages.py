"""Messages the console's widgets, screens and workers exchange (all dataclasses)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

Row = tuple[int, dict[str, Any]]
"""(seq, structured event) as the stream delivers it."""


@dataclass
class EventsArrived(Message):
    """A batch of events from one SSE feed, in seq order. The receiver sets `handled`
    once the batch is on screen: the feed waits for it before posting the next one,
    so a slow UI slows the reader down instead of piling up messages."""

    feed: str
    events: list[Row]
    handled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ConnectionChanged(Message):
    """A feed connected to or lost the broker (`state` is connected / disconnected)."""

    feed: str
    state: str
    detail: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConnectionChanged) and message.feed == self.feed


@dataclass
class StreamCounters(Message):
    """Counters of the Stream screen, for its header line (only the latest matters)."""

    total: int
    held: int
    """Events that arrived while paused and are not shown yet."""
    rate: float
    """Events per second over the last seconds."""
    following: bool
    paused: bool

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StreamCounters)


@dataclass
class OpenEvent(Message):
    """Show the detail of the event with this seq."""

    seq: int


@dataclass
class FilterSubmitted(Message):
    """The filter bar's expression was applied ("" clears the filter)."""

    expression: str


@dataclass
class FilterValidated(Message):
    """The broker checked the expression being typed; `error` is None when it parses."""

    expression: str
    error: str | None
    position: int | None = None
    warning: str | None = None
    """Why the expression, though valid, can never match (an unknown function)."""
