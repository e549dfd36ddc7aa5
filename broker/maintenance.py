"""Store housekeeping as a broker service: periodic maintenance and storage metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.core import Broker


def setup(broker: Broker) -> None:
    """Run `store.maintain()` every `maintenance_interval_s` and export storage sizes."""
    interval = broker.settings.maintenance_interval_s

    async def run() -> None:
        # Snapshots a crash left behind (the data directory lock says no backup of
        # another process can be running).
        for stale in Path(broker.settings.data_dir).glob(".backup-*.db*"):
            stale.unlink(missing_ok=True)
        while True:
            await broker.clock.sleep(interval)
            await broker.store.maintain()

    store = broker.store
    metrics = broker.metrics
    metrics.sampled("opsbus_store_db_bytes", "Size of the store's database file.", "gauge",
                    lambda: store.storage_stats().db_bytes)
    metrics.sampled("opsbus_store_wal_bytes", "Size of the store's write-ahead log file.",
                    "gauge", lambda: store.storage_stats().wal_bytes)
    metrics.sampled("opsbus_store_wal_max_bytes", "The wal_max_bytes setting: past it the log"
                    " is checkpointed and truncated once no reader holds an older snapshot.",
                    "gauge", lambda: broker.settings.wal_max_bytes)
    metrics.sampled("opsbus_store_wal_checkpoints_total",
                    "Truncating checkpoints of the write-ahead log by result: truncated, or"
                    " busy (a reader held an older snapshot; retried at the next commit).",
                    "counter", lambda: {("truncated",): store.storage_stats().checkpoints,
                                        ("busy",): store.storage_stats().checkpoints_busy},
                    labels=("result",))
    broker.add_service("store-maintenance", run)
