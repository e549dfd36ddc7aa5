"""The Stream view's state: what is asked for (CESQL, free text, the bus's own events
or not), whether it is paused, what arrived meanwhile, totals and rate."""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from console.messages import Row, StreamCounters
from console.models.observable import Observable

OWN_EVENTS = "type LIKE 'opsbus.%' OR source LIKE 'opsbus/%'"
"""The bus's own events: audit trail, deliveries, actions, plugins."""
RATE_WINDOW_S = 5.0
CESQL_WORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "IS", "EXISTS",
                         "BETWEEN", "TRUE", "FALSE", "NULL"})
OPERATORS = re.compile(r"""['"=<>!()+*%,]|\s-\s""")


def is_free_text(text: str) -> bool:
    """Bare words (no operator, quote, parenthesis or CESQL keyword) are a search, not an
    expression: `orders`, `db-1 timeout`. A lone attribute name as a CESQL filter means
    "is true", which no one types on purpose."""
    text = text.strip()
    if not text or OPERATORS.search(text):
        return False
    return not any(word.upper() in CESQL_WORDS for word in text.split())


@dataclass(frozen=True)
class Query:
    """What the Stream asks the broker for."""

    expression: str = ""
    """As typed: a CESQL expression, or bare words searched for in the events' text."""
    hide_own: bool = True

    @property
    def text(self) -> str | None:
        """The free-text search, when the expression is one."""
        return self.expression.strip() if is_free_text(self.expression) else None

    @property
    def cesql(self) -> str | None:
        """The CESQL filter sent to the broker (the own-events toggle included)."""
        parts = []
        if self.expression.strip() and self.text is None:
            parts.append(f"({self.expression.strip()})")
        if self.hide_own:
            parts.append(f"NOT ({OWN_EVENTS})")
        return " AND ".join(parts) or None

    def describe(self) -> str:
        parts = []
        if self.text:
            parts.append(f"text: {self.text}")
        elif self.expression.strip():
            parts.append(f"filter: {self.expression.strip()}")
        parts.append("own events hidden" if self.hide_own else "own events shown")
        return "   ".join(parts)


class StreamModel(Observable):
    """Live rows are handed to the table; while paused they are held (bounded)."""

    def __init__(self, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.query = Query()
        self.paused = False
        self.held: deque[Row] = deque()
        self.held_count = 0
        self.gap = False
        """The table no longer joins up with the live feed (jumped, or held overflowed)."""
        self.total = 0
        self.status = "loading"
        """loading, ready, or error (`problem` says why)."""
        self.problem: str | None = None
        self.warning: str | None = None
        """Why the filter may never match (an unknown function...)."""
        self._arrivals: deque[tuple[float, int]] = deque()

    def ask(self, query: Query) -> None:
        self.query = query
        self.status, self.problem = "loading", None
        self.reset()

    def reset(self) -> None:
        """Fresh rows are being loaded: nothing is held any more."""
        self.held.clear()
        self.held_count = 0
        self.gap = False

    def arrived(self, rows: list[Row]) -> list[Row]:
        """Count a live batch; the rows to show now (none while paused)."""
        self.total += len(rows)
        self._arrivals.append((self.clock(), len(rows)))
        if not self.paused:
            return rows
        self.held.extend(rows)
        self.held_count += len(rows)
        while len(self.held) > self.window:
            self.held.popleft()
            self.gap = True
        return []

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> list[Row] | None:
        """The held rows to show, or None after a gap (reload the newest instead)."""
        self.paused = False
        if self.gap:
            return None
        rows = list(self.held)
        self.reset()
        return rows

    def rate(self) -> float:
        now = self.clock()
        while self._arrivals and self._arrivals[0][0] < now - RATE_WINDOW_S:
            self._arrivals.popleft()
        if not self._arrivals:
            return 0.0
        span = min(RATE_WINDOW_S, max(1.0, now - self._arrivals[0][0]))
        return sum(n for _, n in self._arrivals) / span

    def counters(self, following: bool) -> StreamCounters:
        return StreamCounters(self.total, self.held_count, self.rate(), following,
                              self.paused)
