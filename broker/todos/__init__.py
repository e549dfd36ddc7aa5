"""Todo queues: events that need a person become grouped items to claim and resolve.

The feature registers the `queues` configuration kind, the `queue:<name>` route target
(`TodoIntake`) and the sweeper (lease expiry, snooze ends); operators act through
`TodoService`. Every change of an item is published as an `opsbus.todo.<change>` event
in the transaction that makes it. Its records and repository contract are `model` and
`repository`; the backends implement the latter.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from broker.config import Kind
from broker.metrics_queues import register_queue_metrics
from broker.todos.intake import TodoIntake
from broker.todos.queues import Queue, QueueRegistry, validate_queue
from broker.todos.quick_actions import TodoQuickActions
from broker.todos.service import OPERATIONS, TodoService
from broker.todos.silences import Silences
from broker.todos.sweeper import TodoSweeper
from broker.todos.views import TodoViews

if TYPE_CHECKING:
    from broker.bus import Bus, EventLog
    from broker.clock import Clock
    from broker.todos.repository import SilenceRepository, TodoRepository
    from broker.wiring import Wiring

__all__ = ["OPERATIONS", "Queue", "TodoService", "Todos", "validate_queue"]


class Todos:
    """The todos feature, built from what it uses."""

    def __init__(self, *, bus: Bus, todos: TodoRepository, silences: SilenceRepository,
                 events: EventLog, clock: Clock, sweep_s: float) -> None:
        self.counters: Counter[str] = Counter()
        """Item changes by kind, for metrics."""
        self.queues = QueueRegistry()
        self.silences = Silences(silences, bus, clock)
        self.intake = TodoIntake(self.queues, todos, self.silences, self.counters)
        self.service = TodoService(bus, todos, events, self.queues, clock)
        self.views = TodoViews(todos, self.queues, clock)
        self.sweeper = TodoSweeper(bus, todos, self.queues, clock, sweep_s, self.counters)
        self.quick_actions = TodoQuickActions(todos, self.queues)

    def wire(self, wiring: Wiring) -> None:
        wiring.kind(Kind("queues", "queue", validate_queue))
        wiring.on_config(self.queues.load)
        # The intake takes its steps itself, only where it changes anything; an event
        # of an item the transaction holds is attached without a coroutine.
        wiring.target("queue", self.intake.take, undoes=True, quick=self.intake.take_held)
        wiring.service("todo-sweeper", self.sweeper.run)
        wiring.metrics.sampled(
            "opsbus_todo_changes_total", "Todo item changes by kind (opened, claimed, ...).",
            "counter", lambda: {(k,): v for k, v in self.counters.items()}, labels=("change",))
        register_queue_metrics(wiring.metrics, self.views)
