"""Pre-fill an opsbus data directory to N events (and todo items) quickly.

    .venv/bin/python bench/prefill.py DATA_DIR --events 10M [--items 1M] [--queues 10]

The store's own code creates (or migrates) the schema; rows are then written with a
bulk path: indexes of the filled tables are dropped, rows inserted in large unsynced
transactions, and the indexes rebuilt (a sort, much faster than 10 M random inserts);
the events' keys are then filed into one key table per day by the store's own code
(`periods.file_existing`, what the migration to this layout runs), each written sorted.
Events have random UUID ids, realistic attributes (20 % carry correlation and causation
ids) and recvtimes spread evenly over the past 30 days, so time-windowed structures see
a month-old bus. Items (default: one per 10 events) are spread over the queues: 20 %
open, 5 % claimed, the rest resolved, each with its first event and an "opened" history
row. A filled directory is reused when it already holds at least N events.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from _common import PAYLOAD, ROOT, parse_count

sys.path.insert(0, str(ROOT))
from broker.store.keys import identity_key, link_key
from broker.store.sqlite.periods import file_existing
from broker.store.window import DEFAULT_PERIOD_S

DAY = 86_400
TYPES = [f"svc{i}.{kind}" for i in range(20)
         for kind in ("alert.firing", "deploy.done", "ticket.updated", "heartbeat")]


def store_path(data_dir: Path) -> Path:
    return data_dir / "opsbus.db"


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def create_schema(data_dir: Path) -> None:
    """Let the store create and migrate its file, exactly as `opsbus serve` would."""
    from broker.store.sqlite import SqliteBackend

    async def run() -> None:
        store = SqliteBackend(store_path(data_dir))
        await store.open()
        await store.close()

    asyncio.run(run())


def stored_events(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def without_indexes(conn: sqlite3.Connection, tables: list[str]) -> list[str]:
    """Drop the tables' secondary indexes; returns the statements that rebuild them."""
    found = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({','.join('?' * len(tables))})", tables).fetchall()
    for name, _ in found:
        conn.execute(f"DROP INDEX {name}")
    return [sql for _, sql in found]


def event_rows(n: int, start: int, now: float, total: int, rng: random.Random):  # type: ignore[no-untyped-def]
    """Rows of the events table for seqs start+1 … start+n, spread over 30 days."""
    first = now - 30 * DAY
    step = (30 * DAY - 60) / max(total, 1)
    for seq in range(start + 1, start + n + 1):
        ident = str(uuid.UUID(bytes=os.urandom(16), version=4))
        source = f"monitoring/cluster-{rng.randrange(40)}"
        kind = TYPES[rng.randrange(len(TYPES))]
        subject = f"node-{rng.randrange(2000)}"
        at = stamp(first + seq * step)
        corr = cause = None
        lineage = ""
        if rng.random() < 0.2:
            corr = str(uuid.UUID(bytes=os.urandom(16), version=4))
            cause = str(uuid.UUID(bytes=os.urandom(16), version=4))
            lineage = f',"causationid":"{cause}","correlationid":"{corr}","hopcount":1'
        body = (f'{{"specversion":"1.0","id":"{ident}","source":"{source}","type":"{kind}",'
                f'"subject":"{subject}","time":"{at}","datacontenttype":"application/json",'
                f'"data":{{"n":{seq},"severity":"warning","payload":"{PAYLOAD}"}}{lineage}}}'
                ).encode()
        yield (seq, source, ident, kind, subject, at, at, corr, cause,
               hashlib.blake2b(body, digest_size=16).digest(), body,
               identity_key(source, ident), link_key(corr), link_key(cause))


def fill_events(conn: sqlite3.Connection, start: int, total: int, now: float) -> None:
    rng = random.Random(start)
    columns = ("seq, source, id, type, subject, time, recvtime, correlationid, causationid,"
               " digest, body, idhash, corrkey, causekey")
    sql = f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * 14)})"
    done = start
    while done < total:
        n = min(100_000, total - done)
        conn.execute("BEGIN")
        conn.executemany(sql, event_rows(n, done, now, total, rng))
        conn.execute("COMMIT")
        done += n
        print(f"\r  events {done:>12,}/{total:,}", end="", file=sys.stderr, flush=True)
    conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (total,))
    if conn.execute("SELECT changes()").fetchone()[0] == 0:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (total,))
    print(file=sys.stderr)


def fill_items(conn: sqlite3.Connection, items: int, events: int, queues: int,
               now: float) -> None:
    rng = random.Random(7)
    first = now - 30 * DAY
    rows, links, history = [], [], []
    have = conn.execute("SELECT count(*) FROM todos").fetchone()[0]
    for n in range(have + 1, items + 1):
        seq = max(1, n * events // max(items, 1))
        at = stamp(first + (30 * DAY - 60) * seq / max(events, 1))
        roll = rng.random()
        state = "open" if roll < 0.20 else "claimed" if roll < 0.25 else "resolved"
        owner = "alice" if state == "claimed" else None
        resolved = at if state == "resolved" else None
        queue = f"queue-{n % queues}"
        rows.append((n, queue, f"monitoring/cluster-{n % 40}/node-{n}", f"item {n}", state,
                     None, owner, None, None, 1, at, at, at, at, resolved,
                     '{"by":"alice","note":"","auto":false}' if resolved else None, seq, seq))
        links.append((n, seq))
        history.append((n, at, "opened", None, seq))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO todos (id, queue, key, title, state, priority, owner, lease_expires,"
        " snoozed_until, count, first_seen, last_seen, created_at, updated_at, resolved_at,"
        f" resolution, event_seq, first_event_seq) VALUES ({', '.join('?' * 18)})", rows)
    conn.executemany("INSERT OR IGNORE INTO todo_events (todo_id, seq) VALUES (?, ?)", links)
    conn.executemany("INSERT INTO todo_history (todo_id, at, action, operator, event_seq)"
                     " VALUES (?, ?, ?, ?, ?)", history)
    conn.execute("COMMIT")


def prefill(data_dir: Path, events: int, items: int | None = None, queues: int = 10) -> Path:
    """Make `data_dir` hold at least `events` events; returns the store file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = store_path(data_dir)
    have = stored_events(path)
    if events == 0 or have >= events:
        if not path.exists():
            create_schema(data_dir)
        return path
    items = events // 10 if items is None else items
    create_schema(data_dir)
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # pre-fill only: no durability needed
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-2000000")
    rebuild = without_indexes(conn, ["events", "todos"])
    now = time.time()
    fill_events(conn, have, events, now)
    fill_items(conn, items, events, queues, now)
    print("  rebuilding indexes", file=sys.stderr, flush=True)
    for sql in rebuild:
        conn.execute(sql)
    print("  filing keys by day", file=sys.stderr, flush=True)
    conn.execute("BEGIN")
    file_existing(conn, DEFAULT_PERIOD_S)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    # Written unsynced, the file leaves gigabytes of dirty pages behind: the first run's
    # first fsyncs (the broker's, on the same ext4 file system) would wait for them to be
    # written out (COMMITs of 120-200 ms): a stall that belongs to the pre-fill, not the bus.
    print("  syncing", file=sys.stderr, flush=True)
    with path.open("rb") as written:
        os.fsync(written.fileno())
    print(f"  filled {events:,} events, {items:,} items in {time.monotonic() - started:.0f}s"
          f" ({path.stat().st_size / 2**30:.1f} GiB)", file=sys.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--events", default="1M")
    parser.add_argument("--items", default=None)
    parser.add_argument("--queues", type=int, default=10)
    args = parser.parse_args()
    prefill(args.data_dir, parse_count(args.events),
            parse_count(args.items) if args.items else None, args.queues)


if __name__ == "__main__":
    main()
