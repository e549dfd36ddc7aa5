"""What the GIL costs the commit thread: inserts of event-like rows on a thread, alone and
beside busy Python (another process, then another thread of the same process), as the
broker's commit thread runs beside its event loop.

    .venv/bin/python bench/commit_thread.py [--rounds 30]

Each figure: rows/s inside the transactions (1,600 rows per fsynced commit, WAL,
`synchronous=FULL`) and the inserting thread's CPU per row. `values`: 64 rows per
statement, as the store inserts a batch; `json_each`: every row of a commit in one
statement reading one bound JSON text (the GIL held only around the statement). The
reference is the same inserts with nothing else running.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from _common import load_average, machine

ROWS = 1600
CHUNK = 64
COLUMNS = "source, id, type, subject, time, recvtime, body, idhash, routes"
VALUES = (f"INSERT INTO events ({COLUMNS}) VALUES "
          + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * CHUNK))
JSON_EACH = (f"INSERT INTO events ({COLUMNS}) SELECT value->>0, value->>1, value->>2,"
             " value->>3, value->>4, value->>5, CAST(value->>6 AS BLOB), value->>7,"
             " value->>8 FROM json_each(?)")


def rows() -> list[tuple[object, ...]]:
    out = []
    for n in range(ROWS):
        event_id = str(uuid.uuid4())
        body = orjson.dumps({"specversion": "1.0", "id": event_id, "source": "bench",
                             "type": "bench.event", "time": "2026-11-30T20:00:00Z",
                             "data": {"n": n, "msg": "hello world", "host": "web-1"}})
        out.append(("bench", event_id, "bench.event", None, "2026-11-30T20:00:00Z",
                    "2026-11-30T20:00:00.123Z", body, hash(event_id) & (2**63 - 1), None))
    return out


def insert(mode: str, rounds: int, folder: Path) -> tuple[float, float]:
    """(rows/s inside the transactions, CPU µs per row of this thread)."""
    path = folder / f"{mode}-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT,"
                 " id TEXT, type TEXT, subject TEXT, time TEXT, recvtime TEXT, body BLOB,"
                 " idhash INTEGER, routes BLOB)")
    conn.execute("CREATE TABLE keys (key INTEGER PRIMARY KEY, seq INTEGER) WITHOUT ROWID")
    batches = [rows() for _ in range(rounds)]
    wall = cpu = 0.0
    for batch in batches:
        started, started_cpu = time.perf_counter(), time.thread_time()
        conn.execute("BEGIN IMMEDIATE")
        if mode == "values":
            flat = [value for row in batch for value in row]
            span = CHUNK * 9
            conn.executemany(VALUES, [flat[at:at + span] for at in range(0, len(flat), span)])
        else:
            text = orjson.dumps([[*row[:6], row[6].decode(), *row[7:]]  # type: ignore[union-attr]
                                 for row in batch]).decode()
            conn.execute(JSON_EACH, (text,))
        conn.execute("INSERT INTO keys SELECT idhash, seq FROM events"
                     " WHERE seq > (SELECT coalesce(max(seq), 0) FROM keys)")
        conn.execute("COMMIT")
        wall += time.perf_counter() - started
        cpu += time.thread_time() - started_cpu
    conn.close()
    return ROWS * rounds / wall, cpu / (ROWS * rounds) * 1e6


def spin(stop: threading.Event | None = None, seconds: float = 0.0) -> None:
    """Busy Python: until `stop` is set, or for `seconds`."""
    table: dict[int, int] = {}
    until = time.monotonic() + seconds
    while not (stop.is_set() if stop is not None else time.monotonic() > until):
        for key in range(1000):
            table[key] = key * 2


def measure(mode: str, beside: str, rounds: int, folder: Path) -> str:
    stop = threading.Event()
    other: threading.Thread | multiprocessing.Process | None = None
    if beside == "thread":
        other = threading.Thread(target=spin, args=(stop,))
    elif beside == "process":
        other = multiprocessing.Process(target=spin, args=(None, 600.0))
    if other is not None:
        other.start()
    try:
        rate, cpu = insert(mode, rounds, folder)
    finally:
        stop.set()
        if isinstance(other, multiprocessing.Process):
            other.terminate()
        if other is not None:
            other.join()
    return f"  {mode:9} beside {beside:8} {rate:>10,.0f} rows/s   {cpu:5.1f} µs CPU per row"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="commits per figure")
    args = parser.parse_args()
    print(f"machine: {machine()}, {load_average()}, SQLite {sqlite3.sqlite_version}")
    print(f"{ROWS:,} rows per fsynced commit, {args.rounds} commits per figure\n")
    with tempfile.TemporaryDirectory(prefix="opsbus-commit-thread-") as folder:
        for interval in (sys.getswitchinterval(), 0.0005):
            sys.setswitchinterval(interval)
            print(f"switch interval {interval * 1000:g} ms")
            for mode in ("values", "json_each"):
                for beside in ("nothing", "process", "thread"):
                    print(measure(mode, beside, args.rounds, Path(folder)), flush=True)


if __name__ == "__main__":
    main()
