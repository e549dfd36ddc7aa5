"""The store's write path alone: `append_many` of random-id events, no HTTP, no routing.

    .venv/bin/python bench/write_path.py [--durability off|normal|full] [--store FILE]
                                         [--dedupe-window 2|forever]

60 transactions of 3,200 events (32 appends of 100, as a full group commit of batched
publishers) into a fresh store, or into FILE (e.g. a pre-filled bench store). Prints
events/s of wall time and per CPU-second of this process (the latter is steadier on a
shared machine). Run it from two trees (PYTHONPATH=<tree>) to compare layouts. Events
are received now, so on a pre-filled store (recvtimes over the past month) the dedupe
window reaches the periods it would in a live bus; `--dedupe-window forever` probes
every period's keys instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from _common import PAYLOAD, load_average, machine

from broker.bus.log import canonical, digest_of
from broker.store.sqlite import SqliteBackend
from broker.store.window import DedupeWindow, parse_window
from broker.timeutil import to_rfc3339


async def run(path: Path, durability: str, window: DedupeWindow) -> None:
    store = SqliteBackend(path, durability=durability, window=window)
    await store.open()
    batches = []
    for _ in range(60):
        items = []
        for i in range(3200):
            event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "bench/write",
                     "type": "bench.event", "subject": f"s{i % 50}",
                     "time": "2026-11-25T10:00:00Z", "datacontenttype": "application/json",
                     "data": {"n": i, "payload": PAYLOAD}}
            raw = canonical(event)
            items.append((event, raw, digest_of(raw)))
        batches.append(items)
    recvtime = to_rfc3339(datetime.now(UTC))
    wall, cpu = time.perf_counter(), time.process_time()
    for items in batches:
        async with store.transaction() as tx:
            writes = store.events.writes(tx)
            for at in range(0, len(items), 100):
                await writes.append_many(items[at:at + 100], recvtime)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = 60 * 3200
    print(f"{n:,} events, durability {durability}, dedupe window"
          f" {'forever' if window.forever else window.periods}: {n / wall:,.0f} ev/s wall,"
          f" {n / cpu:,.0f} ev/s per CPU-second; file {os.path.getsize(path) / 2**20:,.0f} MiB")
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durability", default="off")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--dedupe-window", default="2")
    args = parser.parse_args()
    print(f"machine: {machine()}, {load_average()}")
    path = args.store or Path(tempfile.mkdtemp(prefix="opsbus-write-")) / "opsbus.db"
    window = DedupeWindow(periods=parse_window(args.dedupe_window))
    asyncio.run(run(path, args.durability, window))


if __name__ == "__main__":
    main()
