"""The log's keys filed by period: one small key table per period behind a catalogue.

The `events` table is one rowid table by seq and only ever appends. Its random keys
(the 64-bit hashes of identity, correlation and causation, `broker/store/keys.py`) live
in one WITHOUT ROWID table per period, `event_keys_<start>` with `(key, kind, seq)`, so
every random insert lands in a table the size of one period, not of the whole log
(docs/storage.md). `event_key_periods` catalogues them with the seq range each covers;
the writer creates the next one inside the transaction that first needs it. Retention
drops a period's table once every seq of it lies below the cut, after copying the keys
of the events it kept into `event_keys_kept`. The view `event_keys` is every key table
at once; readers query it, so they never read the catalogue first (the view is part of
the schema snapshot their statement runs on).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.store.sqlite.connections import beside_held
from broker.store.window import epoch_of, period_start
from broker.timeutil import to_rfc3339

KEPT = "event_keys_kept"
VIEW = "event_keys"
FILING_MIGRATIONS = frozenset({13})
"""Migrations after whose statements the store files the existing log's keys."""
UNION_TERMS = 100
"""Tables per compound SELECT (SQLite allows 500 terms in one; larger unions nest)."""


@dataclass(frozen=True, slots=True)
class Period:
    """One key table: the recvtimes it was opened for and the seqs it covers."""

    name: str
    starts_at: str
    ends_at: str
    first_seq: int
    last_seq: int | None  # None while it is the current period


def key_table_sql(name: str) -> str:
    return (f"CREATE TABLE {name} (key INTEGER NOT NULL, kind INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, PRIMARY KEY (key, kind, seq)) WITHOUT ROWID")


def union_all(selects: Sequence[str]) -> str:
    """`selects` as one UNION ALL, nested in groups so no compound exceeds SQLite's
    limit on terms."""
    if len(selects) <= UNION_TERMS:
        return " UNION ALL ".join(selects)
    groups = [selects[at:at + UNION_TERMS] for at in range(0, len(selects), UNION_TERMS)]
    return union_all([f"SELECT * FROM ({' UNION ALL '.join(g)})" for g in groups])


def table_name(starts_at: str) -> str:
    """`event_keys_20261125` for a period starting at midnight, with the time of day
    otherwise (`event_keys_20261125T1300`): starts only ever rise, so names are unique."""
    moment = datetime.fromisoformat(starts_at.replace("Z", "+00:00"))
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return f"event_keys_{moment:%Y%m%d}"
    if moment.second == 0:
        return f"event_keys_{moment:%Y%m%dT%H%M}"
    return f"event_keys_{moment:%Y%m%dT%H%M%S}"


def _stamp(epoch: int) -> str:
    return to_rfc3339(datetime.fromtimestamp(epoch, UTC))


class KeyPeriods:
    """The catalogue as the writer reads it: inside the writer's transaction, so what a
    rolled-back unit created is gone from it too (it is a few dozen rows; reading it is
    cheaper than keeping a copy right across savepoints)."""

    COLUMNS = "name, starts_at, ends_at, first_seq, last_seq"
    NEWEST_FIRST = "ORDER BY first_seq DESC, starts_at DESC"

    def __init__(self, period_s: int) -> None:
        self.period_s = period_s

    def newest(self, conn: sqlite3.Connection) -> Period | None:
        """The current period (None before the first event)."""
        # Beside held inserts (here and in `window`): they never write the catalogue.
        row = beside_held(conn, f"SELECT {self.COLUMNS} FROM event_key_periods"
                          f" {self.NEWEST_FIRST} LIMIT 1").fetchone()
        return Period(*row) if row else None

    def current(self, conn: sqlite3.Connection, recvtime: str) -> str | None:
        """The key table new keys received at `recvtime` go to; None when `recvtime`
        lies past the current period's end (`open` the next). Periods never go
        backwards: after a clock step back, keys stay in the current one."""
        last = self.newest(conn)
        if last is not None and (recvtime < last.ends_at or epoch_of(recvtime) is None):
            return last.name
        return None

    def open(self, conn: sqlite3.Connection, recvtime: str, first_seq: int) -> Period:
        """Open the period `recvtime` falls in, after the current one, from `first_seq`
        on. Its table is created and catalogued, the current one closed at
        `first_seq - 1`. A recvtime that is not a stamp (only a store from the first
        schema has those) opens a period at the epoch that any stamp closes."""
        last = self.newest(conn)
        start = period_start(recvtime, self.period_s)
        if start is None:
            if last is not None:
                return last
            starts_at = ends_at = _stamp(0)
        else:
            # After a clock step back the current period may end past this one's start:
            # it begins where that one ends (still before `recvtime`).
            starts_at = max(_stamp(start), last.ends_at if last else "")
            ends_at = _stamp(start + self.period_s)
        period = Period(table_name(starts_at), starts_at, ends_at, first_seq, None)
        conn.execute(key_table_sql(period.name))
        if last is not None:
            conn.execute("UPDATE event_key_periods SET last_seq = ? WHERE name = ?",
                         (first_seq - 1, last.name))
        conn.execute("INSERT INTO event_key_periods (name, starts_at, ends_at, first_seq)"
                     " VALUES (?, ?, ?, ?)",
                     (period.name, starts_at, ends_at, first_seq))
        rebuild_view(conn, names(conn))
        return period

    def window(self, conn: sqlite3.Connection, since: str) -> list[str]:
        """Key tables that may hold a key received at or after `since` (every key of a
        table was received before its `ends_at`), newest first, and the kept keys
        unless there are none (until retention drops a period): a probe looks each
        key up in every table named."""
        tables = [row[0] for row in beside_held(
            conn, f"SELECT name FROM event_key_periods WHERE ends_at > ? {self.NEWEST_FIRST}",
            (since,))]
        (kept,) = beside_held(conn, f"SELECT EXISTS (SELECT 1 FROM {KEPT})").fetchone()
        return [*tables, KEPT] if kept else tables


def names(conn: sqlite3.Connection) -> list[str]:
    """Every period's key table, oldest first."""
    return [row[0] for row in conn.execute(
        "SELECT name FROM event_key_periods ORDER BY first_seq, starts_at")]


def rebuild_view(conn: sqlite3.Connection, tables: Sequence[str]) -> None:
    """`event_keys`: the kept keys and every period's, as one relation."""
    conn.execute(f"DROP VIEW IF EXISTS {VIEW}")
    selects = [f"SELECT key, kind, seq FROM {t}" for t in (KEPT, *tables)]
    conn.execute(f"CREATE VIEW {VIEW} AS {union_all(selects)}")


def drop_passed(conn: sqlite3.Connection, cut: int) -> list[str]:
    """Drop every closed period whose seqs all lie at or below `cut`, first copying the
    keys of the events retention kept in it into `event_keys_kept` (from the events'
    own key columns: bounded by what was kept, not by the period). Returns the names."""
    passed = conn.execute(
        "SELECT name, first_seq, last_seq FROM event_key_periods"
        " WHERE last_seq IS NOT NULL AND last_seq <= ? ORDER BY first_seq", (cut,)).fetchall()
    if not passed:
        return []
    for name, first, last in passed:
        conn.execute(
            f"INSERT OR IGNORE INTO {KEPT} (key, kind, seq)"
            " SELECT idhash, 0, seq FROM events WHERE seq BETWEEN ?1 AND ?2"
            " AND idhash IS NOT NULL"
            " UNION ALL SELECT corrkey, 1, seq FROM events WHERE seq BETWEEN ?1 AND ?2"
            " AND corrkey IS NOT NULL"
            " UNION ALL SELECT causekey, 2, seq FROM events WHERE seq BETWEEN ?1 AND ?2"
            " AND causekey IS NOT NULL", (first, last))
        conn.execute(f"DROP TABLE {name}")
        conn.execute("DELETE FROM event_key_periods WHERE name = ?", (name,))
    rebuild_view(conn, names(conn))
    return [row[0] for row in passed]


# -- filing an existing log (migration, bulk pre-fill) -------------------------------------


def _at_or_after(conn: sqlite3.Connection, seq: int) -> tuple[int, str] | None:
    row = conn.execute("SELECT seq, recvtime FROM events WHERE seq >= ? ORDER BY seq LIMIT 1",
                       (seq,)).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _last_before(conn: sqlite3.Connection, lo: int, hi: int, stamp: str) -> int:
    """The highest seq in [lo, hi] received before `stamp`, by binary search on seq:
    under the single writer recvtime rises with seq (a clock step back only moves a few
    events into the neighbouring period). At least `lo`."""
    found = lo
    low = lo + 1
    while low <= hi:
        mid = (low + hi) // 2
        row = _at_or_after(conn, mid)
        if row is not None and row[0] <= hi and row[1] < stamp:
            found = row[0]
            low = row[0] + 1
        else:
            hi = mid - 1
    return found


def file_existing(conn: sqlite3.Connection, period_s: int, progress: bool = False) -> int:
    """File the keys of every stored event (those not filed yet: above the newest
    period's range) into period tables by recvtime, one period per statement, each
    sorted so its table is written in key order. Returns the periods made. Runs inside
    the caller's transaction (the migration's, or a bulk pre-fill's)."""
    periods = KeyPeriods(period_s)
    known = periods.newest(conn)
    (head,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    filed = 0
    if known is not None:  # the newest period's keys are filed up to its highest seq
        (newest,) = conn.execute(f"SELECT max(seq) FROM {known.name}").fetchone()
        filed = max(known.first_seq - 1, newest or 0)
    made = 0
    row = _at_or_after(conn, filed + 1)
    while row is not None and row[0] <= head:
        first, recvtime = row
        if periods.current(conn, recvtime) is None:
            periods.open(conn, recvtime, first)
            made += 1
        period = periods.newest(conn)
        assert period is not None
        name, ends_at = period.name, period.ends_at
        # Not a stamp (a store from the first schema): the rest goes to this period.
        high = (head if epoch_of(recvtime) is None
                else _last_before(conn, first, head, ends_at))
        conn.execute("CREATE TEMP TABLE filing AS SELECT seq, recvtime, idhash, corrkey,"
                     " causekey FROM events WHERE seq BETWEEN ? AND ?", (first, high))
        conn.execute(
            f"INSERT INTO {name} (key, kind, seq)"
            " SELECT key, kind, seq FROM (SELECT idhash AS key, 0 AS kind, seq FROM filing"
            " WHERE idhash IS NOT NULL UNION ALL SELECT corrkey, 1, seq FROM filing"
            " WHERE corrkey IS NOT NULL UNION ALL SELECT causekey, 2, seq FROM filing"
            " WHERE causekey IS NOT NULL) ORDER BY key, kind, seq")
        # Where recvtime once fell back (a clock step, a bulk load), the range may hold
        # keys received after the period's end: it then ends with the period of the
        # latest, so that every key of a table is received before its `ends_at`.
        (latest,) = conn.execute("SELECT max(recvtime) FROM filing").fetchone()
        conn.execute("DROP TABLE temp.filing")
        start = period_start(latest or "", period_s)
        if start is not None and latest >= ends_at:
            conn.execute("UPDATE event_key_periods SET ends_at = ? WHERE name = ?",
                         (_stamp(start + period_s), name))
        if progress:
            print(f"\r  keys filed up to seq {high:>12,} of {head:,} ({name})", end="",
                  flush=True)
        row = _at_or_after(conn, high + 1)
    if progress:
        print()
    return made
