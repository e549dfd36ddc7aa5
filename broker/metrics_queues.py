"""Queue metrics: items waiting per queue and the age of the oldest open one (from the store)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.metrics import Metrics

if TYPE_CHECKING:
    from broker.todos.views import TodoViews

VIEWS = ("open", "claimed", "snoozed")


def register_queue_metrics(metrics: Metrics, views: TodoViews) -> None:
    """Queue depth and oldest open age, read from the store at each scrape."""
    depth = metrics.gauge("opsbus_queue_items",
                          "Unresolved todo items per queue and view (open, claimed, snoozed).",
                          labels=("queue", "state"))
    oldest = metrics.gauge("opsbus_queue_oldest_open_age_seconds",
                           "Age of the oldest open (unclaimed, not snoozed) item per queue;"
                           " 0 when none is open.", labels=("queue",))

    async def refresh() -> None:
        from broker.todos.views import queue_overview

        queues = await queue_overview(views)
        depth.clear()
        oldest.clear()
        for queue in queues:
            for view in VIEWS:
                depth.labels(queue["name"], view).set(queue[view])
            oldest.labels(queue["name"]).set(queue["oldest_open_age_s"] or 0)

    metrics.refresh(refresh)
