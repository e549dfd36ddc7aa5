"""The write-ahead log stays bounded: long readers let it grow only while they read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import orjson

from broker.bus import digest_of
from broker.store.sqlite import SqliteBackend
from tests.broker_process import BrokerProcess
from tests.conftest import make_event
from tests.ops_support import publish_batch

LIMIT = 4 * 1024 * 1024


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def pin_snapshot(db: Path) -> sqlite3.Connection:
    """A reader that opens a read transaction and keeps it: the pattern that grew the
    log to 112 MB for good."""
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()
    return reader


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


async def test_after_a_long_reader_ends_the_next_commit_truncates_the_log(
    tmp_path: Path, http: aiohttp.ClientSession
):
    proc = BrokerProcess(tmp_path / "data", args=["--wal-max-bytes", str(LIMIT)]).start()
    db = tmp_path / "data" / "opsbus.db"
    try:
        await publish_batch(http, proc.url, 10)
        reader = pin_snapshot(db)
        for _ in range(20):
            await publish_batch(http, proc.url, 500, size=1000)
        held = wal_size(db)
        assert held > 2 * LIMIT, "a pinned snapshot keeps the log from being checkpointed"
        reader.execute("COMMIT")
        reader.close()
        await publish_batch(http, proc.url, 1)
        after = wal_size(db)
        assert after <= LIMIT
        busy = await metric(http, proc.url,
                            'opsbus_store_wal_checkpoints_total{result="busy"}')
        done = await metric(http, proc.url,
                            'opsbus_store_wal_checkpoints_total{result="truncated"}')
        assert busy >= 1 and done >= 1
        print(f"\nWAL with a reader pinned: {held / 2**20:.1f} MiB;"
              f" after it ended and one commit: {after / 2**10:.0f} KiB (limit 4 MiB)")
    finally:
        proc.stop()


async def test_a_stream_reading_slowly_through_a_backlog_pins_no_snapshot(
    tmp_path: Path, http: aiohttp.ClientSession
):
    proc = BrokerProcess(tmp_path / "data", args=["--wal-max-bytes", str(LIMIT)]).start()
    db = tmp_path / "data" / "opsbus.db"
    try:
        for _ in range(20):
            await publish_batch(http, proc.url, 500, size=1000)
        largest = 0
        async with http.get(proc.url + "/v1/stream", params={"after": "0"}) as stream:
            first = await stream.content.readline()
            assert first.startswith(b"retry:") or first.startswith(b":")
            # The client now reads nothing: the broker's writes to it block while the
            # backlog is far from sent. Publishing goes on meanwhile.
            for _ in range(20):
                await publish_batch(http, proc.url, 500, size=1000)
                largest = max(largest, wal_size(db))
            await stream.content.readexactly(64 * 1024)  # it was alive and behind
        # A commit may find a short read under way and leave the truncation to the next
        # one: the log stays within the limit plus what is written while reads that
        # started earlier finish (one batch, ~0.7 MiB, on a quiet machine). Without the
        # bound it would pass 16 MiB here and stay there.
        assert largest <= 2 * LIMIT
        print(f"\nlargest WAL while a slow stream caught up: {largest / 2**20:.2f} MiB")
    finally:
        proc.stop()


async def test_maintenance_truncates_the_log_without_a_commit(tmp_path: Path):
    store = SqliteBackend(tmp_path / "store.db", durability="normal", wal_max_bytes=LIMIT)
    await store.open()
    try:
        async with store.transaction() as tx:
            raw = orjson.dumps(make_event())
            await store.events.writes(tx).append(orjson.loads(raw), raw, "t", digest_of(raw))
        reader = pin_snapshot(store.path)
        for _ in range(10):
            async with store.transaction() as tx:
                items = []
                for _ in range(500):
                    raw = orjson.dumps(make_event(data={"pad": "x" * 1000}))
                    items.append((orjson.loads(raw), raw, digest_of(raw)))
                await store.events.writes(tx).append_many(items, "t")
        assert wal_size(store.path) > LIMIT
        await store.maintain()  # the reader still holds its snapshot: nothing to do yet
        assert wal_size(store.path) > LIMIT
        reader.execute("COMMIT")
        await store.maintain()
        assert wal_size(store.path) == 0
        stats = store.storage_stats()
        assert stats.checkpoints >= 1 and stats.checkpoints_busy >= 1
        reader.close()
    finally:
        await store.close()
