"""The metrics of the bus itself: commits, ingest and commit latency, live readers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.metrics import Metrics

if TYPE_CHECKING:
    from broker.bus import Bus
    from broker.hub import Hub
    from broker.routing import Router


def register_core_metrics(metrics: Metrics, bus: Bus, hub: Hub, router: Router) -> None:
    """Register the families every broker has, whatever features it runs."""
    metrics.sampled("opsbus_events_committed_total", "Events committed since start.",
                    "counter", lambda: bus.events_committed)
    metrics.sampled("opsbus_commits_total", "Write transactions committed since start.",
                    "counter", lambda: bus.commits)
    metrics.sampled("opsbus_last_seq", "Highest committed seq.", "gauge", lambda: hub.head)
    metrics.sampled("opsbus_stream_subscribers",
                    "Live readers: SSE streams, console feeds and pull long-polls.", "gauge",
                    lambda: hub.subscriber_count)
    metrics.sampled("opsbus_stream_overflows_total",
                    "Times a live reader fell behind and caught up from the store.",
                    "counter", lambda: hub.overflows)
    metrics.sampled("opsbus_routes", "Routes in the live table.", "gauge",
                    lambda: len(router.routes))
    metrics.counter(*STREAM_DROPS)  # present from the start, at 0
    metrics.gauge(*SSE_READERS)
    bus.observe_ingest = metrics.loop_histogram(
        "opsbus_ingest_seconds",
        "Seconds from a publish (HTTP, source, proxy) to its durable commit.").observe
    bus.observe_commit = metrics.loop_histogram(
        "opsbus_commit_seconds",
        "Seconds one group transaction took from begin to commit (fsync included).").observe


STREAM_DROPS = ("opsbus_stream_drops",
                "Stream clients dropped because they stopped reading (they resume by seq).")
"""Name and help of the counter the SSE handler increments."""

SSE_READERS = ("opsbus_sse_readers", "Open Server-Sent Events streams (/v1/stream).")
"""Name and help of the gauge the SSE handler moves."""
