"""Delivery metrics: attempts, failures, dead letters and calls in flight per subscription."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from broker.metrics import Metrics


@dataclass
class DeliveryCounts:
    """Counted by the push dispatcher and the pull service, read at scrape time."""

    attempts: Counter[str] = field(default_factory=Counter)
    """Webhook calls made, and events leased to pull consumers, per subscription."""
    failures: Counter[str] = field(default_factory=Counter)
    """Calls that failed (retried or given up), and leases released or rejected."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Deliveries given up and turned into dead letters."""


def register_delivery_metrics(metrics: Metrics, counts: DeliveryCounts,
                              in_flight: Callable[[], Mapping[str, int]]) -> None:
    """The families to alert on: failing subscriptions and growing dead letters."""
    def by_subscription(counter: Counter[str]) -> Callable[[], dict[tuple[str, ...], float]]:
        return lambda: {(name,): float(n) for name, n in counter.items()}

    labels = ("subscription",)
    metrics.sampled("opsbus_delivery_attempts_total",
                    "Delivery attempts: webhook calls made and events leased to pull"
                    " consumers.", "counter", by_subscription(counts.attempts), labels)
    metrics.sampled("opsbus_delivery_failures_total",
                    "Failed attempts: webhook calls that failed, pull leases released or"
                    " rejected.", "counter", by_subscription(counts.failures), labels)
    metrics.sampled("opsbus_delivery_dead_letters_total",
                    "Deliveries given up and dead-lettered.", "counter",
                    by_subscription(counts.dead_letters), labels)
    metrics.sampled("opsbus_delivery_in_flight", "Webhook calls in flight.", "gauge",
                    lambda: {(name,): float(n) for name, n in in_flight().items()}, labels)
