"""Raw SQLite layout benchmark: candidate event-log layouts measured without the broker.

    .venv/bin/python bench/layout.py [--sizes 0,1M,10M] [--layouts today,window,...]
                                     [--rows 320000] [--commit 3200] [--dir /tmp/opsbus-bench]

For each layout and store size: pre-fill a fresh file to N rows (random UUID ids,
recvtimes spread over the past month, 20 % of rows carrying correlation/causation ids),
then, with the broker's pragmas (WAL, `synchronous=FULL`, 64 MiB cache), insert
`--rows` new rows with `executemany`, `--commit` rows per fsynced commit, and time it.
The rows are generated before the clock starts, so the figure is SQLite's alone.
After ingest: point lookups (by seq, by identity within the dedupe rule, by
correlation), the newest 100 of one type, and retention (remove the oldest day).
Files are deleted after each measurement. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _common import machine, parse_count

DAY = 86_400
MONTH_DAYS = 30
TYPES = [f"svc{i}.{kind}" for i in range(20) for kind in ("alert.firing", "deploy.done",
                                                              "ticket.updated", "heartbeat")]
BODY_PAD = "x" * 300


@dataclass(frozen=True, slots=True)
class Row:
    """One event as the layouts store it."""

    source: str
    id: str
    idhash: int
    type: str
    subject: str
    time: str
    recvtime: str
    epoch: float
    correlationid: str | None
    causationid: str | None
    digest: bytes
    body: bytes


def hash64(*parts: str | None) -> int | None:
    """A signed 64-bit hash of text parts (NUL-separated), as SQLite's INTEGER holds."""
    if parts[0] is None:
        return None
    data = "\0".join(p or "" for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_rows(n: int, start_epoch: float, end_epoch: float, rng: random.Random) -> Iterator[Row]:
    """`n` events with random ids and recvtimes rising evenly from start to end."""
    step = (end_epoch - start_epoch) / max(n, 1)
    for i in range(n):
        epoch = start_epoch + i * step
        source = f"monitoring/cluster-{rng.randrange(40)}"
        ident = str(uuid.UUID(bytes=os.urandom(16), version=4))
        kind = TYPES[rng.randrange(len(TYPES))]
        subject = f"node-{rng.randrange(2000)}"
        corr = cause = None
        if rng.random() < 0.2:
            corr = str(uuid.UUID(bytes=os.urandom(16), version=4))
            cause = str(uuid.UUID(bytes=os.urandom(16), version=4))
        stamp = rfc3339(epoch)
        body = (f'{{"specversion":"1.0","id":"{ident}","source":"{source}","type":"{kind}",'
                f'"subject":"{subject}","time":"{stamp}","datacontenttype":"application/json",'
                f'"data":{{"n":{i},"severity":"warning","payload":"{BODY_PAD}"}}}}').encode()
        yield Row(source, ident, hash64(source, ident) or 0, kind, subject, stamp, stamp,
                  epoch, corr, cause, hashlib.blake2b(body, digest_size=16).digest(), body)


# -- layouts ---------------------------------------------------------------------------


class Layout:
    """A candidate layout: its schema, its insert path, its lookups, its retention."""

    name = ""
    describe = ""
    auto_vacuum = "INCREMENTAL"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def create(self) -> None:
        raise NotImplementedError

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        """Insert rows (seqs seq0+1 …) inside the caller's transaction; duplicates of
        the dedupe rule are skipped (never hit here: ids are random)."""
        raise NotImplementedError

    def identity_lookup(self, row: Row) -> int | None:
        raise NotImplementedError

    def correlation_lookup(self, corr: str) -> list[int]:
        raise NotImplementedError

    def newest_of_type(self, kind: str) -> list[int]:
        return [r[0] for r in self.conn.execute(
            f"SELECT seq FROM {self.events_for_listing()} WHERE type = ?"
            " ORDER BY seq DESC LIMIT 100", (kind,))]

    def events_for_listing(self) -> str:
        return "events"

    def read_seq(self, seq: int) -> bytes | None:
        row = self.conn.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def retention(self, before_epoch: float) -> int:
        """Remove events received before `before_epoch` in batches of 10,000, each its
        own commit; returns the rows removed."""
        upto = seq_before(self.conn, "events", rfc3339(before_epoch))
        removed = 0
        low = self.conn.execute("SELECT coalesce(min(seq), 0) FROM events").fetchone()[0]
        while low <= upto:
            high = min(upto, low + 9_999)
            self.conn.execute("BEGIN IMMEDIATE")
            removed += self.conn.execute(
                "DELETE FROM events WHERE seq BETWEEN ? AND ?", (low, high)).rowcount
            self.after_delete(low, high)
            self.conn.execute("COMMIT")
            low = high + 1
        return removed

    def after_delete(self, low: int, high: int) -> None:
        pass

    def copy_from(self, n: int) -> None:
        """Fill from the attached pre-filled source `src` (bare layout, n rows), in C."""
        copy_ranges(self.conn, n, "INSERT INTO events SELECT * FROM src.events"
                    " WHERE seq BETWEEN ? AND ?")


def copy_ranges(conn: sqlite3.Connection, n: int, sql: str) -> None:
    for low in range(1, n + 1, 1_000_000):
        conn.execute("BEGIN")
        conn.execute(sql, (low, min(n, low + 999_999)))
        conn.execute("COMMIT")


def seq_before(conn: sqlite3.Connection, table: str, stamp: str) -> int:
    """The highest seq received before `stamp`, by binary search on seq (recvtime rises
    with seq under the single writer), so no recvtime index is needed."""
    lo, hi = conn.execute(f"SELECT coalesce(min(seq), 1), coalesce(max(seq), 0)"
                          f" FROM {table}").fetchone()
    found = lo - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        row = conn.execute(f"SELECT seq, recvtime FROM {table} WHERE seq >= ?"
                           " ORDER BY seq LIMIT 1", (mid,)).fetchone()
        if row is not None and row[1] < stamp:
            found = row[0]
            lo = row[0] + 1
        else:
            hi = mid - 1
    return int(found)


EVENT_COLUMNS = (
    "seq INTEGER PRIMARY KEY, source TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,"
    " subject TEXT, time TEXT, recvtime TEXT NOT NULL, correlationid TEXT,"
    " causationid TEXT, digest BLOB NOT NULL, routes TEXT, body BLOB NOT NULL")
LEAN_COLUMNS = EVENT_COLUMNS + (
    ", idhash INTEGER NOT NULL, corrkey INTEGER, causekey INTEGER")


class Today(Layout):
    name = "today"
    describe = ("main's schema: unique (source, id), index on id, recvtime, partial on"
                " correlation and causation")
    auto_vacuum = "NONE"

    def create(self) -> None:
        columns = EVENT_COLUMNS.replace("PRIMARY KEY", "PRIMARY KEY AUTOINCREMENT")
        self.conn.executescript(f"""
            CREATE TABLE events ({columns});
            CREATE UNIQUE INDEX events_identity ON events (source, id);
            CREATE INDEX events_id ON events (id);
            CREATE INDEX events_recvtime ON events (recvtime);
            CREATE INDEX events_correlation ON events (correlationid)
                WHERE correlationid IS NOT NULL;
            CREATE INDEX events_causation ON events (causationid)
                WHERE causationid IS NOT NULL;
        """)

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        self.conn.executemany(
            "INSERT INTO events (source, id, type, subject, time, recvtime, correlationid,"
            " causationid, digest, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source, id) DO NOTHING",
            [(r.source, r.id, r.type, r.subject, r.time, r.recvtime, r.correlationid,
              r.causationid, r.digest, r.body) for r in rows])

    def identity_lookup(self, row: Row) -> int | None:
        found = self.conn.execute("SELECT seq FROM events WHERE source = ? AND id = ?",
                                  (row.source, row.id)).fetchone()
        return found[0] if found else None

    def correlation_lookup(self, corr: str) -> list[int]:
        return [r[0] for r in self.conn.execute(
            "SELECT seq FROM events WHERE correlationid = ?1 UNION"
            " SELECT seq FROM events WHERE causationid = ?1", (corr,))]

    def copy_from(self, n: int) -> None:
        columns = ("seq, source, id, type, subject, time, recvtime, correlationid,"
                   " causationid, digest, routes, body")
        copy_ranges(self.conn, n, f"INSERT INTO events ({columns}) SELECT {columns}"
                    " FROM src.events WHERE seq BETWEEN ? AND ?")


def lean_rows(rows: Sequence[Row], seq0: int) -> list[tuple[object, ...]]:
    return [(seq0 + i, r.source, r.id, r.type, r.subject, r.time, r.recvtime,
             r.correlationid, r.causationid, r.digest, r.body, r.idhash,
             hash64(r.correlationid), hash64(r.causationid))
            for i, r in enumerate(rows, 1)]


LEAN_INSERT = (
    "INSERT INTO {table} (seq, source, id, type, subject, time, recvtime, correlationid,"
    " causationid, digest, body, idhash, corrkey, causekey)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def lean_indexes(table: str, unique: bool) -> str:
    identity = (f"CREATE UNIQUE INDEX {table}_identity ON {table} (idhash);"
                if unique else "")
    return f"""{identity}
        CREATE INDEX {table}_corr ON {table} (corrkey) WHERE corrkey IS NOT NULL;
        CREATE INDEX {table}_cause ON {table} (causekey) WHERE causekey IS NOT NULL;"""


class Lean(Layout):
    """Events keyed by seq; identity as a unique index on a 64-bit hash of (source, id);
    correlation and causation as partial indexes on 64-bit hashes."""

    name = "hash-forever"
    describe = ("unique index on idhash = hash64(source, id), kept forever; partial"
                " indexes on hash64(correlationid), hash64(causationid)")
    listing_indexes = False
    unique = True

    def create(self) -> None:
        self.conn.executescript(f"CREATE TABLE events ({LEAN_COLUMNS});"
                                + lean_indexes("events", self.unique))
        self.create_dedupe()
        if self.listing_indexes:
            self.conn.executescript("""
                CREATE INDEX events_type ON events (type, seq);
                CREATE INDEX events_source ON events (source, seq);
                CREATE INDEX events_subject ON events (subject, seq);
            """)

    def create_dedupe(self) -> None:
        pass

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        before = self.conn.total_changes
        self.conn.executemany(LEAN_INSERT.format(table="events")
                              + " ON CONFLICT (idhash) DO NOTHING", lean_rows(rows, seq0))
        # Every key new is the common case; a duplicate takes a per-row path.
        assert self.conn.total_changes - before == len(rows)

    def identity_lookup(self, row: Row) -> int | None:
        found = self.conn.execute("SELECT seq FROM events WHERE idhash = ?",
                                  (row.idhash,)).fetchone()
        return int(found[0]) if found else None

    def correlation_lookup(self, corr: str) -> list[int]:
        key = hash64(corr)
        return [r[0] for r in self.conn.execute(
            "SELECT seq FROM events WHERE corrkey = ?1 AND correlationid = ?2 UNION"
            " SELECT seq FROM events WHERE causekey = ?1 AND causationid = ?2", (key, corr))]


class Window(Lean):
    """Identity kept for a window only, in two generations: the current one takes
    inserts, the previous one is only probed; rotation empties the older one."""

    name = "window"
    describe = ("events without identity index; dedupe(idhash INTEGER PRIMARY KEY, seq)"
                " in 2 rotating generations of 500,000 events; same hashed links")
    unique = False
    generation = 500_000

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.gen = 0
        self.gen_rows = 0

    def create_dedupe(self) -> None:
        for g in (0, 1):
            self.conn.execute(f"CREATE TABLE dedupe_{g} (idhash INTEGER PRIMARY KEY,"
                              " seq INTEGER NOT NULL)")

    def dedupe_tables(self) -> list[str]:
        return [f"dedupe_{self.gen % 2}", f"dedupe_{(self.gen + 1) % 2}"]

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        if self.gen_rows >= self.generation:
            self.rotate()
        current, previous = self.dedupe_tables()
        before = self.conn.total_changes
        self.conn.executemany(
            f"INSERT INTO {current} (idhash, seq) SELECT ?1, ?2 WHERE NOT EXISTS"
            f" (SELECT 1 FROM {previous} WHERE idhash = ?1) ON CONFLICT DO NOTHING",
            [(r.idhash, seq0 + i) for i, r in enumerate(rows, 1)])
        assert self.conn.total_changes - before == len(rows)
        self.conn.executemany(LEAN_INSERT.format(table="events"), lean_rows(rows, seq0))
        self.gen_rows += len(rows)

    def copy_from(self, n: int) -> None:
        super().copy_from(n)
        self.gen = (n - 1) // self.generation
        self.gen_rows = n - self.gen * self.generation
        current, previous = self.dedupe_tables()
        self.conn.execute("BEGIN")
        self.conn.execute(f"INSERT INTO {current} SELECT idhash, seq FROM src.events"
                          " WHERE seq > ?", (self.gen * self.generation,))
        self.conn.execute(f"INSERT INTO {previous} SELECT idhash, seq FROM src.events"
                          " WHERE seq > ? AND seq <= ?",
                          ((self.gen - 1) * self.generation, self.gen * self.generation))
        self.conn.execute("COMMIT")

    def rotate(self) -> None:
        """The older generation becomes the new current one, emptied."""
        self.gen += 1
        self.conn.execute(f"DELETE FROM dedupe_{self.gen % 2}")  # truncate optimisation
        self.gen_rows = 0

    def identity_lookup(self, row: Row) -> int | None:
        for table in self.dedupe_tables():
            found = self.conn.execute(f"SELECT seq FROM {table} WHERE idhash = ?",
                                      (row.idhash,)).fetchone()
            if found:
                return int(found[0])
        return None


class WindowListing(Window):
    name = "window+listing"
    describe = "window plus (type, seq), (source, seq), (subject, seq) for filtered listings"
    listing_indexes = True


class WindowNoLinks(Window):
    """The window without correlation/causation indexes: what the links cost."""

    name = "window-nolinks"
    describe = "window without the correlation/causation indexes (isolates their cost)"

    def create(self) -> None:
        self.conn.execute(f"CREATE TABLE events ({LEAN_COLUMNS})")
        self.create_dedupe()

    def correlation_lookup(self, corr: str) -> list[int]:
        return []


class Partitioned(Layout):
    """One table per day with its own identity and link indexes; dedupe probes the
    current and previous partitions; retention drops a day whole."""

    name = "partitioned"
    describe = ("one events table per day, each with unique idhash and hashed links;"
                " window = current + previous day")

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.parts: list[tuple[int, int]] = []  # (day, first seq)

    def create(self) -> None:
        self.conn.execute("CREATE TABLE partitions (day INTEGER PRIMARY KEY,"
                          " first_seq INTEGER NOT NULL)")

    def _load(self) -> None:
        if not self.parts:
            self.parts = [(int(d), int(s)) for d, s in self.conn.execute(
                "SELECT day, first_seq FROM partitions ORDER BY day")]

    def _table(self, day: int) -> str:
        return f"events_{day}"

    def _ensure(self, day: int, seq: int) -> None:
        self._load()
        if self.parts and self.parts[-1][0] >= day:
            return
        t = self._table(day)
        # executescript would commit the caller's transaction: one statement at a time.
        for statement in (f"CREATE TABLE {t} ({LEAN_COLUMNS});"
                          + lean_indexes(t, True)).split(";"):
            if statement.strip():
                self.conn.execute(statement)
        self.conn.execute("INSERT INTO partitions (day, first_seq) VALUES (?, ?)", (day, seq))
        self.parts.append((day, seq))

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        self._load()
        i = 0
        while i < len(rows):
            day = int(rows[i].epoch // DAY)
            j = i
            while j < len(rows) and int(rows[j].epoch // DAY) == day:
                j += 1
            self._ensure(day, seq0 + i + 1)
            self._insert_day(day, rows[i:j], seq0 + i)
            i = j

    def _insert_day(self, day: int, rows: Sequence[Row], seq0: int) -> None:
        t = self._table(day)
        previous = [d for d, _ in self.parts if d < day][-1:]
        if previous:
            probe = self._table(previous[0])
            for start in range(0, len(rows), 500):
                part = rows[start:start + 500]
                hits = self.conn.execute(
                    f"SELECT count(*) FROM {probe} WHERE idhash IN"
                    f" ({','.join('?' * len(part))})", [r.idhash for r in part]).fetchone()[0]
                assert hits == 0
        before = self.conn.total_changes
        self.conn.executemany(LEAN_INSERT.format(table=t) + " ON CONFLICT (idhash) DO NOTHING",
                              lean_rows(rows, seq0))
        assert self.conn.total_changes - before == len(rows)

    def copy_from(self, n: int) -> None:
        first = self.conn.execute("SELECT recvtime FROM src.events WHERE seq = 1").fetchone()[0]
        day = int(datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp() // DAY)
        low = 1
        while low <= n:
            high = seq_before(self.conn, "src.events", rfc3339((day + 1) * DAY))
            self.conn.execute("BEGIN")
            self._ensure(day, low)
            t = self._table(day)
            self.conn.execute(f"INSERT INTO {t} SELECT * FROM src.events"
                              " WHERE seq BETWEEN ? AND ?", (low, high))
            self.conn.execute("COMMIT")
            low = high + 1
            day += 1

    def _day_of_seq(self, seq: int) -> int | None:
        self._load()
        found = None
        for day, first in self.parts:
            if first <= seq:
                found = day
        return found

    def read_seq(self, seq: int) -> bytes | None:
        day = self._day_of_seq(seq)
        if day is None:
            return None
        row = self.conn.execute(f"SELECT body FROM {self._table(day)} WHERE seq = ?",
                                (seq,)).fetchone()
        return row[0] if row else None

    def identity_lookup(self, row: Row) -> int | None:
        self._load()
        for day, _ in reversed(self.parts[-2:]):
            found = self.conn.execute(f"SELECT seq FROM {self._table(day)} WHERE idhash = ?",
                                      (row.idhash,)).fetchone()
            if found:
                return int(found[0])
        return None

    def correlation_lookup(self, corr: str) -> list[int]:
        self._load()
        key = hash64(corr)
        found: list[int] = []
        for day, _ in self.parts:
            t = self._table(day)
            found += [r[0] for r in self.conn.execute(
                f"SELECT seq FROM {t} WHERE corrkey = ?1 AND correlationid = ?2 UNION"
                f" SELECT seq FROM {t} WHERE causekey = ?1 AND causationid = ?2",
                (key, corr))]
        return found

    def newest_of_type(self, kind: str) -> list[int]:
        self._load()
        found: list[int] = []
        for day, _ in reversed(self.parts):
            found += [r[0] for r in self.conn.execute(
                f"SELECT seq FROM {self._table(day)} WHERE type = ? ORDER BY seq DESC"
                f" LIMIT {100 - len(found)}", (kind,))]
            if len(found) >= 100:
                break
        return found

    def retention(self, before_epoch: float) -> int:
        self._load()
        removed = 0
        for day, first in list(self.parts):
            if (day + 1) * DAY > before_epoch:
                break
            t = self._table(day)
            self.conn.execute("BEGIN IMMEDIATE")
            removed += self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            self.conn.execute(f"DROP TABLE {t}")
            self.conn.execute("DELETE FROM partitions WHERE day = ?", (day,))
            self.conn.execute("COMMIT")
            self.parts.remove((day, first))
        return removed


class KeysByPeriod(Layout):
    """What the broker runs (broker/store/sqlite/periods.py): one `events` table by seq,
    no index on it; the random keys (identity, correlation, causation hashes) in one
    WITHOUT ROWID `(key, kind, seq)` table per day; dedupe probes the current and
    previous day's tables; retention deletes events by seq and drops a passed day's key
    table whole."""

    name = "keys-by-period"
    describe = ("events by seq; hashed identity and links in one (key, kind, seq) table"
                " per day; window = current + previous day (the landed layout)")

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.parts: list[tuple[int, int]] = []  # (day, first seq)

    def create(self) -> None:
        self.conn.executescript(f"""
            CREATE TABLE events ({LEAN_COLUMNS});
            CREATE TABLE key_periods (day INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL);
        """)

    def _load(self) -> None:
        if not self.parts:
            self.parts = [(int(d), int(s)) for d, s in self.conn.execute(
                "SELECT day, first_seq FROM key_periods ORDER BY day")]

    def _ensure(self, day: int, seq: int) -> None:
        self._load()
        if self.parts and self.parts[-1][0] >= day:
            return
        self.conn.execute(f"CREATE TABLE keys_{day} (key INTEGER NOT NULL, kind INTEGER"
                          " NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, kind, seq))"
                          " WITHOUT ROWID")
        self.conn.execute("INSERT INTO key_periods (day, first_seq) VALUES (?, ?)", (day, seq))
        self.parts.append((day, seq))

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        self._load()
        day = int(rows[-1].epoch // DAY)
        self._ensure(day, seq0 + 1)
        window = [d for d, _ in self.parts[-2:]]
        for start in range(0, len(rows), 500):
            part = rows[start:start + 500]
            marks = ", ".join(f"?{n}" for n in range(1, len(part) + 1))
            probes = " UNION ALL ".join(
                f"SELECT seq FROM keys_{d} WHERE key IN ({marks}) AND kind = 0"
                for d in window)
            hits = self.conn.execute(f"SELECT count(*) FROM events WHERE seq IN ({probes})",
                                     [r.idhash for r in part]).fetchone()[0]
            assert hits == 0
        values = lean_rows(rows, seq0)
        self.conn.executemany(LEAN_INSERT.format(table="events"), values)
        keys = [(v[11], 0, v[0]) for v in values]
        keys += [(v[12], 1, v[0]) for v in values if v[12] is not None]
        keys += [(v[13], 2, v[0]) for v in values if v[13] is not None]
        self.conn.executemany(f"INSERT INTO keys_{day} (key, kind, seq) VALUES (?, ?, ?)",
                              keys)

    def copy_from(self, n: int) -> None:
        super().copy_from(n)
        first = self.conn.execute("SELECT recvtime FROM events WHERE seq = 1").fetchone()[0]
        day = int(datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp() // DAY)
        low = 1
        while low <= n:
            high = seq_before(self.conn, "events", rfc3339((day + 1) * DAY))
            self.conn.execute("BEGIN")
            self._ensure(day, low)
            self.conn.execute(
                "WITH r AS MATERIALIZED (SELECT seq, idhash, corrkey, causekey FROM events"
                f" WHERE seq BETWEEN ? AND ?) INSERT INTO keys_{day} SELECT * FROM ("
                " SELECT idhash, 0, seq FROM r UNION ALL SELECT corrkey, 1, seq FROM r"
                " WHERE corrkey IS NOT NULL UNION ALL SELECT causekey, 2, seq FROM r"
                " WHERE causekey IS NOT NULL) ORDER BY 1, 2, 3", (low, high))
            self.conn.execute("COMMIT")
            low = high + 1
            day += 1

    def identity_lookup(self, row: Row) -> int | None:
        self._load()
        probes = " UNION ALL ".join(f"SELECT seq FROM keys_{d} WHERE key = ?1 AND kind = 0"
                                    for d, _ in reversed(self.parts[-2:]))
        found = self.conn.execute(f"SELECT seq FROM events WHERE seq IN ({probes})"
                                  " AND source = ?2 AND id = ?3", (row.idhash, row.source,
                                                                   row.id)).fetchone()
        return int(found[0]) if found else None

    def correlation_lookup(self, corr: str) -> list[int]:
        self._load()
        probes = " UNION ALL ".join(
            f"SELECT seq FROM keys_{d} WHERE key = ?1 AND kind IN (1, 2)" for d, _ in self.parts)
        return [r[0] for r in self.conn.execute(
            f"SELECT seq FROM events WHERE seq IN ({probes}) AND (correlationid = ?2"
            " OR causationid = ?2)", (hash64(corr), corr))]

    def after_delete(self, low: int, high: int) -> None:
        self._load()
        # A day whose seqs all lie at or below the deleted range goes whole (the next
        # day's first seq bounds it).
        while len(self.parts) > 1 and self.parts[1][1] - 1 <= high:
            day, _ = self.parts.pop(0)
            self.conn.execute(f"DROP TABLE keys_{day}")
            self.conn.execute("DELETE FROM key_periods WHERE day = ?", (day,))


class Bare(Layout):
    name = "bare"
    describe = "events by seq only, no dedupe, no links (the floor)"

    def create(self) -> None:
        self.conn.execute(f"CREATE TABLE events ({LEAN_COLUMNS})")

    def insert(self, rows: Sequence[Row], seq0: int) -> None:
        self.conn.executemany(LEAN_INSERT.format(table="events"), lean_rows(rows, seq0))

    def identity_lookup(self, row: Row) -> int | None:
        return None

    def correlation_lookup(self, corr: str) -> list[int]:
        return []


LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (Today, Lean, Window, WindowListing, WindowNoLinks, Partitioned,
                              KeysByPeriod, Bare)}


# -- the run -----------------------------------------------------------------------------


def open_conn(path: Path, *, bulk: bool, cache_mib: int = 64, mmap_mib: int = 0
              ) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if bulk:  # pre-fill only: no durability, a cache that holds every index
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-4000000")
    else:  # the broker's writer settings
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        conn.execute("PRAGMA wal_autocheckpoint=4000")
        conn.execute(f"PRAGMA mmap_size={mmap_mib * 1024 * 1024}")
    return conn


def prefill_source(path: Path, n: int, now: float, page_size: int) -> None:
    """The bare layout filled by SQLite itself (random ids, hashes and lineage from
    `randomblob`/`random()`, recvtimes over the past month): every other layout is
    copied from it in C, so 10 M rows take minutes, not an hour of Python."""
    conn = open_conn(path, bulk=True)
    conn.execute(f"PRAGMA page_size={page_size}")
    Bare(conn).create()
    first = now - MONTH_DAYS * DAY
    step = (MONTH_DAYS * DAY - 60) / max(n, 1)
    types = ",".join(f"('{t}')" for t in TYPES)
    conn.execute("CREATE TEMP TABLE kinds (k INTEGER PRIMARY KEY, type TEXT)")
    conn.execute(f"INSERT INTO kinds (type) VALUES {types}")
    for low in range(1, n + 1, 1_000_000):
        high = min(n, low + 999_999)
        conn.execute("BEGIN")
        conn.execute(f"""
            WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c WHERE x < ?),
            r AS MATERIALIZED (
                SELECT x, lower(hex(randomblob(16))) AS id, abs(random()) % 40 AS cl,
                       1 + abs(random()) % {len(TYPES)} AS k, abs(random()) % 2000 AS node,
                       abs(random()) % 5 = 0 AS linked,
                       strftime('%Y-%m-%dT%H:%M:%fZ', {first} + x * {step}, 'unixepoch') AS at
                FROM c)
            INSERT INTO events (seq, source, id, type, subject, time, recvtime, correlationid,
                                causationid, digest, body, idhash, corrkey, causekey)
            SELECT x, 'monitoring/cluster-' || cl, id, kinds.type, 'node-' || node, at, at,
                   CASE WHEN linked THEN lower(hex(randomblob(16))) END,
                   CASE WHEN linked THEN lower(hex(randomblob(16))) END,
                   randomblob(16),
                   printf('{{"specversion":"1.0","id":"%s","source":"monitoring/cluster-%d",'
                          || '"type":"%s","subject":"node-%d","time":"%s",'
                          || '"datacontenttype":"application/json","data":{{"n":%d,'
                          || '"severity":"warning","payload":"{BODY_PAD}"}}}}',
                          id, cl, kinds.type, node, at, x),
                   random(), CASE WHEN linked THEN random() END,
                   CASE WHEN linked THEN random() END
            FROM r JOIN kinds USING (k)""", (low, high))
        conn.execute("COMMIT")
    conn.close()


def derive(layout_cls: type[Layout], source: Path | None, path: Path, n: int,
           page_size: int) -> Layout:
    """A fresh file in `layout_cls`'s layout holding the source's n rows."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = open_conn(path, bulk=True)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute(f"PRAGMA auto_vacuum={layout_cls.auto_vacuum}")
    layout = layout_cls(conn)
    layout.create()
    if source is not None and n:
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        layout.copy_from(n)
        conn.execute("DETACH DATABASE src")
    conn.close()
    return layout


def percentile(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def timed(fn: Callable[[], object], times: int) -> tuple[float, float]:
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        took.append((time.perf_counter() - t0) * 1000)
    return percentile(took, 0.5), percentile(took, 0.99)


def measure(names: list[str], size: int, args: argparse.Namespace) -> list[dict[str, object]]:
    """Every layout at one size: filled, then timed in interleaved rounds so a noisy
    moment on a shared machine hits every layout alike."""
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    source = folder / f"layout-source-{size}.db"
    fills: dict[str, float] = {}
    if size:
        t0 = time.monotonic()
        source.unlink(missing_ok=True)
        prefill_source(source, size, now, args.page_size)
        print(f"  source of {size:,} rows made in {time.monotonic() - t0:.0f}s", flush=True)
    layouts: dict[str, Layout] = {}
    for name in names:
        t0 = time.monotonic()
        derived = derive(LAYOUTS[name], source if size else None,
                         folder / f"layout-{name}-{size}.db", size, args.page_size)
        fills[name] = time.monotonic() - t0
        conn = open_conn(folder / f"layout-{name}-{size}.db", bulk=False,
                         cache_mib=args.cache_mib, mmap_mib=args.mmap_mib)
        layout = LAYOUTS[name](conn)
        if isinstance(derived, Window):
            layout.gen, layout.gen_rows = derived.gen, derived.gen_rows  # type: ignore[attr-defined]
        layouts[name] = layout
    source.unlink(missing_ok=True)
    rows = list(make_rows(args.rows, now - 30, now, random.Random(2)))
    took = dict.fromkeys(names, 0.0)
    commits: dict[str, list[float]] = {name: [] for name in names}
    per_round = args.commit * 2
    for start in range(0, len(rows), per_round):
        for name, layout in layouts.items():
            conn = layout.conn
            for at in range(start, min(len(rows), start + per_round), args.commit):
                chunk = rows[at:at + args.commit]
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                layout.insert(chunk, size + at)
                conn.execute("COMMIT")
                spent = time.perf_counter() - t0
                took[name] += spent
                commits[name].append(spent * 1000)
    results = []
    for name, layout in layouts.items():
        conn = layout.conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rng = random.Random(3)
        probes = rng.sample(rows, 2000)
        head = size + len(rows)
        corrs = [r.correlationid or "" for r in rows if r.correlationid]
        lookup = timed(lambda lay=layout, g=rng, p=probes: lay.identity_lookup(g.choice(p)),
                       2000)
        by_seq = timed(lambda lay=layout, g=rng, h=head: lay.read_seq(g.randrange(1, h + 1)),
                       2000)
        by_corr = timed(lambda lay=layout, g=rng, c=corrs: lay.correlation_lookup(g.choice(c)),
                        500)
        by_type = timed(lambda lay=layout, g=rng: lay.newest_of_type(g.choice(TYPES)), 200)
        path = folder / f"layout-{name}-{size}.db"
        size_mib = path.stat().st_size / 2**20
        retained = {}
        if size:
            t0 = time.perf_counter()
            removed = layout.retention(now - (MONTH_DAYS - 1) * DAY)
            spent = time.perf_counter() - t0
            conn.execute("PRAGMA incremental_vacuum")
            retained = {"removed": removed, "retention_s": spent}
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        results.append({
            "layout": name, "size": size, "fill_s": fills[name], "rate": len(rows) / took[name],
            "commit_p50": statistics.median(commits[name]),
            "commit_p99": percentile(commits[name], .99), "lookup": lookup, "by_seq": by_seq,
            "by_corr": by_corr, "by_type": by_type, "mib": size_mib, **retained})
    return results


def report(r: dict[str, object]) -> None:
    def ms(pair: object) -> str:
        p50, p99 = pair  # type: ignore[misc]
        return f"{p50:.3f}/{p99:.3f}"

    ret = (f"{r['removed']:>9,} in {r['retention_s']:6.1f}s"  # type: ignore[str-format]
           if "removed" in r else "")
    print(f"{r['layout']:<15} {r['size']:>11,} {r['rate']:>10,.0f} "
          f"{r['commit_p50']:>7.1f}/{r['commit_p99']:<7.1f} {ms(r['lookup']):>13} "
          f"{ms(r['by_seq']):>13} {ms(r['by_corr']):>13} {ms(r['by_type']):>15} "
          f"{r['mib']:>8,.0f} {ret}  (fill {r['fill_s']:.0f}s)", flush=True)


TODO_TABLE = """CREATE TABLE todos (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, key TEXT NOT NULL, title TEXT NOT NULL,
    state TEXT NOT NULL, owner TEXT, snoozed_until TEXT, count INTEGER NOT NULL,
    first_seen TEXT NOT NULL, updated_at TEXT NOT NULL, event_seq INTEGER NOT NULL)"""
TODO_LAYOUTS = {
    "today": """
        CREATE UNIQUE INDEX todos_active_key ON todos (queue, key) WHERE state <> 'resolved';
        CREATE INDEX todos_activity ON todos (updated_at, id);
        CREATE INDEX todos_queue_state ON todos (queue, state);
        CREATE INDEX todos_snoozes ON todos (snoozed_until) WHERE snoozed_until IS NOT NULL;""",
    "proposed": """
        CREATE UNIQUE INDEX todos_active_key ON todos (queue, key) WHERE state <> 'resolved';
        CREATE INDEX todos_listing ON todos (queue, state, updated_at, id);
        CREATE INDEX todos_open_age ON todos (queue, first_seen) WHERE state = 'open';
        CREATE INDEX todos_snoozes ON todos (snoozed_until) WHERE snoozed_until IS NOT NULL;
        CREATE TABLE queue_counts (queue TEXT NOT NULL, state TEXT NOT NULL,
                                   n INTEGER NOT NULL, PRIMARY KEY (queue, state));""",
}
AWAKE = "(snoozed_until IS NULL OR snoozed_until <= :now)"


def todo_listings(items: int, folder: Path) -> None:
    """p50/p99 of the two todo listings at `items` items, today's indexes vs proposed."""
    print(f"\ntodo listings at {items:,} items (10 queues; 20 % open, 5 % claimed)")
    print(f"{'indexes':<10} {'list open, 1 queue':>20} {'queue counts':>16} {'update item':>14}")
    now = rfc3339(time.time())
    for name, ddl in TODO_LAYOUTS.items():
        todo_layout(name, ddl, items, folder, now)


def todo_layout(name: str, ddl: str, items: int, folder: Path, now: str) -> None:
    path = folder / f"todos-{name}.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(TODO_TABLE)
    rng = random.Random(5)
    base = time.time() - MONTH_DAYS * DAY
    rows = []
    for n in range(1, items + 1):
        roll = rng.random()
        state = "open" if roll < .2 else "claimed" if roll < .25 else "resolved"
        at = rfc3339(base + n * MONTH_DAYS * DAY / items)
        rows.append((n, f"queue-{n % 10}", f"k{n}", f"item {n}", state, None,
                     None, 1, at, at, n))
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO todos VALUES ({','.join('?' * 11)})", rows)
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(statement)
    if name == "proposed":
        conn.execute("INSERT INTO queue_counts SELECT queue, state, count(*) FROM todos"
                     " GROUP BY queue, state")
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    listing = (f"SELECT * FROM todos WHERE queue = :q AND state = 'open' AND {AWAKE}"
               " ORDER BY updated_at DESC, id DESC LIMIT 100")
    if name == "today":
        counts = (f"SELECT queue, sum(state = 'open' AND {AWAKE}), sum(state = 'claimed'"
                  f" AND {AWAKE}), sum(state <> 'resolved' AND snoozed_until > :now),"
                  " sum(state = 'resolved'), min(CASE WHEN state = 'open' THEN first_seen"
                  " END) FROM todos GROUP BY queue ORDER BY queue")
    else:  # maintained counters; snoozed items are few and have their own index
        # Counters kept in the item's transaction; the oldest open item by index; the
        # snoozed ones (few) from their own partial index.
        counts = ("SELECT c.queue, c.state, c.n, CASE c.state WHEN 'open' THEN (SELECT"
                  " min(first_seen) FROM todos t INDEXED BY todos_open_age WHERE t.queue ="
                  " c.queue AND t.state = 'open') END FROM queue_counts c UNION ALL"
                  " SELECT queue, 'snoozed', count(*), NULL FROM todos INDEXED BY"
                  " todos_snoozes WHERE snoozed_until > :now AND state <> 'resolved'"
                  " GROUP BY queue")
    q = {"q": "queue-3", "now": now}
    lst = timed(lambda: conn.execute(listing, q).fetchall(), 100)
    cnt = timed(lambda: conn.execute(counts, q).fetchall(), 20)

    def update() -> None:
        n = rng.randrange(1, items + 1)
        conn.execute("BEGIN")
        conn.execute("UPDATE todos SET count = count + 1, updated_at = ? WHERE id = ?",
                     (now, n))
        if name == "proposed":
            conn.execute("UPDATE queue_counts SET n = n WHERE queue = ? AND state = ?",
                         (f"queue-{n % 10}", "open"))
        conn.execute("COMMIT")

    upd = timed(update, 200)
    print(f"{name:<10} {lst[0]:>9.2f}/{lst[1]:<9.2f} {cnt[0]:>7.2f}/{cnt[1]:<8.2f}"
          f" {upd[0]:>6.3f}/{upd[1]:<7.3f} ms (p50/p99)")
    conn.close()
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,1M")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--rows", type=int, default=320_000)
    parser.add_argument("--commit", type=int, default=3200)
    parser.add_argument("--page-size", type=int, default=4096)
    parser.add_argument("--cache-mib", type=int, default=64)
    parser.add_argument("--mmap-mib", type=int, default=0)
    parser.add_argument("--dir", default="/tmp/opsbus-bench")
    parser.add_argument("--todos", type=parse_count, default=0,
                        help="only measure the todo listings at this many items")
    args = parser.parse_args()
    if args.todos:
        print(f"machine: {machine()}")
        todo_listings(args.todos, Path(args.dir))
        return
    print(f"machine: {machine()}")
    print(f"SQLite {sqlite3.sqlite_version}, page_size {args.page_size}, cache"
          f" {args.cache_mib} MiB, mmap {args.mmap_mib} MiB, synchronous=FULL, WAL,"
          f" {args.commit} rows per commit, {args.rows:,} rows timed\n")
    for name in args.layouts.split(","):
        print(f"  {name:<15} {LAYOUTS[name].describe}")
    print(f"\n{'layout':<15} {'stored':>11} {'rows/s':>10} {'commit ms':>15} "
          f"{'identity ms':>13} {'by seq ms':>13} {'by corr ms':>13} {'newest type ms':>15} "
          f"{'file MiB':>8} retention (oldest day)")
    for size in (parse_count(s) for s in args.sizes.split(",")):
        for result in measure(args.layouts.split(","), size, args):
            report(result)


if __name__ == "__main__":
    main()
