"""Store housekeeping as a broker service: periodic maintenance and storage metrics."""

from __future__ import annotations

import asyncio
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
            await asyncio.sleep(interval)
            await broker.store.maintain()

    def samples() -> dict[str, float]:
        stats = broker.store.storage_stats()
        return {
            "opsbus_store_db_bytes": stats.db_bytes,
            "opsbus_store_wal_bytes": stats.wal_bytes,
            "opsbus_store_wal_max_bytes": broker.settings.wal_max_bytes,
            'opsbus_store_wal_checkpoints_total{result="truncated"}': stats.checkpoints,
            'opsbus_store_wal_checkpoints_total{result="busy"}': stats.checkpoints_busy,
            **stats.extra,
        }

    broker.add_service("store-maintenance", run)
    broker.metric_sources.append(samples)
