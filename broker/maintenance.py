"""Store housekeeping as a broker service: periodic maintenance and storage metrics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.clock import Clock
    from broker.store.base_maintenance import Maintenance
    from broker.wiring import Wiring


class StoreHousekeeping:
    """Runs `store.maintain()` every `interval_s` and exports the storage sizes."""

    def __init__(self, store: Maintenance, clock: Clock, *, interval_s: float,
                 data_dir: str, wal_max_bytes: int) -> None:
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self.data_dir = Path(data_dir)
        self.wal_max_bytes = wal_max_bytes

    async def run(self) -> None:
        # Snapshots a crash left behind (the data directory lock says no backup of
        # another process can be running).
        for stale in self.data_dir.glob(".backup-*.db*"):
            stale.unlink(missing_ok=True)
        while True:
            await self.clock.sleep(self.interval_s)
            await self.store.maintain()

    def wire(self, wiring: Wiring) -> None:
        store = self.store
        metrics = wiring.metrics
        metrics.sampled("opsbus_store_db_bytes", "Size of the store's database file.",
                        "gauge", lambda: store.storage_stats().db_bytes)
        metrics.sampled("opsbus_store_wal_bytes", "Size of the store's write-ahead log file.",
                        "gauge", lambda: store.storage_stats().wal_bytes)
        metrics.sampled("opsbus_store_wal_max_bytes", "The wal_max_bytes setting: past it the"
                        " log is checkpointed and truncated once no reader holds an older"
                        " snapshot.", "gauge", lambda: self.wal_max_bytes)
        metrics.sampled("opsbus_store_wal_checkpoints_total",
                        "Truncating checkpoints of the write-ahead log by result: truncated,"
                        " or busy (a reader held an older snapshot; retried at the next"
                        " commit).", "counter",
                        lambda: {("truncated",): store.storage_stats().checkpoints,
                                 ("busy",): store.storage_stats().checkpoints_busy},
                        labels=("result",))
        metrics.sampled("opsbus_store_wal_frames_copied_total",
                        "Pages of the write-ahead log copied back into the database, by who"
                        " copied them: the background thread beside the writer, or the"
                        " committing thread (the last few before the log restarts, or all"
                        " once the log reaches its bound).", "counter",
                        lambda: {("background",): store.storage_stats().frames_copied_background,
                                 ("commit",): store.storage_stats().frames_copied_commit},
                        labels=("by",))
        wiring.service("store-maintenance", self.run)
