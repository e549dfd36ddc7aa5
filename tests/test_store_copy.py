"""`opsbus store copy` moves a SQLite installation onto PostgreSQL: the sample day with
its items, deliveries and configuration, and 100,000 events, verified."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson

from broker.cli.up import SAMPLES, load_samples
from broker.store.postgres import log as pglog
from broker.store.postgres.connection import PgOptions, connect
from broker.store.postgres.copy import copy_sqlite_to_postgres
from broker.store.sqlite import SqliteBackend
from tests.broker_process import ROOT, BrokerProcess
from tests.pg_support import pg_url  # noqa: F401  (fixture)
from tests.pg_writer import new_event
from tests.store_support import sqlite_store_before


def run_copy(source: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "broker", "store", "copy", "--from",
                           str(source), "--to", url], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


async def test_the_sample_day_moves_with_items_and_configuration(
    tmp_path: Path, pg_url: str  # noqa: F811
) -> None:
    data = tmp_path / "data"
    broker = BrokerProcess(data, config=SAMPLES / "opsbus.toml").start()
    try:
        loaded = await load_samples(broker.url, getattr(broker, "token", None), SAMPLES)
    finally:
        broker.stop()
    assert loaded > 50

    done = run_copy(data, pg_url)
    assert done.returncode == 0, done.stderr
    assert "copied and verified" in done.stdout
    assert "MISMATCH" not in done.stdout
    assert "events:" in done.stderr  # progress

    lite = sqlite3.connect(data / "opsbus.db")
    pg = await asyncpg.connect(pg_url)
    try:
        events = lite.execute("SELECT seq, source, id, body FROM events ORDER BY seq").fetchall()
        copied = await pg.fetch("SELECT seq, source, id, body FROM events ORDER BY seq")
        assert [tuple(r) for r in copied] == [(s, src, i, bytes(b)) for s, src, i, b in events]
        hits = {seq: orjson.loads(t) for seq, t in lite.execute(
            "SELECT seq, targets FROM events WHERE targets IS NOT NULL")}
        assert len(hits) > 10
        assert {r["seq"]: orjson.loads(r["targets"]) for r in await pg.fetch(
            "SELECT seq, targets FROM events WHERE targets IS NOT NULL")} == hits
        todos = lite.execute("SELECT id, queue, key, state, count FROM todos ORDER BY id")
        assert [tuple(r) for r in await pg.fetch(
            "SELECT id, queue, key, state, count FROM todos ORDER BY id")] == todos.fetchall()
        assert lite.execute("SELECT count(*) FROM todos").fetchone()[0] > 0
        config = lite.execute("SELECT kind, name, spec FROM config_objects ORDER BY 1, 2")
        assert [(r["kind"], r["name"], orjson.loads(r["spec"])) for r in await pg.fetch(
            "SELECT kind, name, spec FROM config_objects ORDER BY 1, 2")] == [
            (k, n, orjson.loads(s)) for k, n, s in config.fetchall()]
        assert await pglog.committed_head(pg) == events[-1][0]
    finally:
        lite.close()
        await pg.close()

    again = run_copy(data, pg_url)  # never into a store that holds data
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already holds data" in again.stderr


async def test_100k_events_copy_and_the_log_continues(tmp_path: Path, pg_url: str  # noqa: F811
                                                      ) -> None:
    store = SqliteBackend(tmp_path / "opsbus.db", "off")
    await store.open()
    try:
        for start in range(0, 100_000, 5000):
            async with store.transaction() as tx:
                items = []
                for n in range(start, start + 5000):
                    new = new_event("copy/bench", n)
                    items.append((new.event, new.raw, new.digest))
                day = 20 + start // 40_000  # three days: three partitions
                await store.events.writes(tx).append_many(items, f"2026-11-{day}T10:00:00Z")
    finally:
        await store.close()

    seen: list[tuple[str, int, int]] = []
    report = await copy_sqlite_to_postgres(tmp_path / "opsbus.db", PgOptions(pg_url),
                                           progress=lambda *a: seen.append(a))
    assert report.ok
    assert (report.first_seq, report.last_seq) == (1, 100_000)
    assert ("events", 100_000, 100_000) in seen

    conn = await connect(PgOptions(pg_url))
    try:
        parts = await conn.fetch(
            "SELECT first_seq, last_seq FROM log_partitions ORDER BY period")
        assert [tuple(p) for p in parts] == [(1, 40_000), (40_001, 80_000), (80_001, None)]
        # The copied log goes on where SQLite stopped, and dedupes against it.
        raw = orjson.dumps({"n": "next"})
        async with conn.transaction():
            [fresh, repeat] = await pglog.append(conn, [
                pglog.NewEvent({"source": "s", "id": "next", "type": "t"}, raw,
                               hashlib.blake2b(raw, digest_size=16).digest()),
                new_event("copy/bench", 99_999),
            ], "2026-11-22T11:00:00Z")
        assert fresh.seq == 100_001
        assert repeat.duplicate and repeat.seq == 100_000 and not repeat.conflict
    finally:
        await conn.close()


async def test_hits_of_a_store_never_opened_by_this_release_are_copied(
    tmp_path: Path, pg_url: str  # noqa: F811
) -> None:
    """A store of the previous release keeps its hits in `event_targets`; the copy reads
    the file as it is, so the hits come over in their events' rows all the same."""
    path = tmp_path / "opsbus.db"
    lite = sqlite_store_before(path, "_targets_in_row.sql")
    for n in range(3):
        raw = orjson.dumps({"specversion": "1.0", "source": "s", "id": f"e{n}", "type": "t"})
        lite.execute("INSERT INTO events (source, id, type, recvtime, digest, body)"
                     " VALUES ('s', ?, 't', '2026-11-20T10:00:00Z', x'', ?)", (f"e{n}", raw))
    lite.executemany("INSERT INTO event_targets VALUES (?, ?, ?, ?)", [
        (1, "r1", "queue:a", b'{"todo":1}'), (1, "r2", "subscription:s", None),
        (3, "r1", "queue:a", b'{"todo":2}')])
    lite.close()

    report = await copy_sqlite_to_postgres(path, PgOptions(pg_url))
    assert report.ok
    conn = await connect(PgOptions(pg_url))
    try:
        copied = {r["seq"]: r["targets"] and sorted(map(tuple, orjson.loads(r["targets"])))
                  for r in await conn.fetch("SELECT seq, targets FROM events")}
    finally:
        await conn.close()
    assert copied == {1: [("r1", "queue:a", {"todo": 1}), ("r2", "subscription:s", {})],
                      2: None, 3: [("r1", "queue:a", {"todo": 2})]}
