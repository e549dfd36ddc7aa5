"""Todo queues: events that need a person become grouped items to claim and resolve.

`setup(broker)` registers the `queues` configuration kind, the `queue:<name>` route
target and the background sweeper (lease expiry, snooze ends). The service lives in
`broker.extensions["todos"]`; every change of an item is published as an
`opsbus.todo.<change>` event in the transaction that makes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.config import Kind
from broker.metrics_queues import register_queue_metrics
from broker.todos.queues import Queue, validate_queue
from broker.todos.service import OPERATIONS, TodoService

if TYPE_CHECKING:
    from broker.core import Broker

__all__ = ["OPERATIONS", "Queue", "TodoService", "service_of", "setup", "validate_queue"]


def setup(broker: Broker) -> None:
    service = TodoService(broker)
    broker.extensions["todos"] = service
    broker.config.register_kind(Kind("queues", "queue", validate_queue))
    broker.config.on_change(service.load_queues)
    broker.router.register_target("queue", service.handle_target)
    broker.add_service("todo-sweeper", service.sweep_forever)
    broker.metrics.sampled(
        "opsbus_todo_changes_total", "Todo item changes by kind (opened, claimed, ...).",
        "counter", lambda: {(k,): v for k, v in service.counters.items()}, labels=("change",))
    register_queue_metrics(broker.metrics, service)


def service_of(broker: Broker) -> TodoService:
    """The todo service of a broker (set up by `setup`)."""
    service: TodoService = broker.extensions["todos"]
    return service
