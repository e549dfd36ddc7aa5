"""Copy an embedded (SQLite) installation into an empty PostgreSQL store: events with
their seqs, items with history, deliveries, jobs and configuration; then verify counts."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.bus.log import digest_of
from broker.errors import InvalidConfig
from broker.store.keys import identity_key, link_key
from broker.store.postgres.connection import PgOptions, check_server, connect
from broker.store.postgres.log import DEFAULT_PERIOD_S, period_of
from broker.store.postgres.migrate import migrate

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

CHUNK = 5000

TABLES = (
    "config_objects", "counters", "event_lineage", "todos", "todo_events",
    "todo_history", "silences", "deliveries", "delivery_attempts", "subscription_controls",
    "action_jobs", "catalog", "api_tokens",
)
"""Copied after the events, in an order that satisfies the foreign keys."""

SERIAL_TABLES = ("todos", "todo_history", "silences", "deliveries", "action_jobs")

EVENT_COLUMNS = ("seq", "period", "recvtime", "idhash", "source", "id", "type", "subject",
                 "time", "correlationid", "causationid", "corrkey", "causekey", "digest",
                 "routes", "targets", "root", "body")

Progress = Callable[[str, int, int], None]
"""(table, rows copied so far, rows in total)."""


@dataclass(frozen=True)
class TableCount:
    """Rows of one table on each side after the copy."""

    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass(frozen=True)
class CopyReport:
    """What was copied, and whether every count matches."""

    counts: list[TableCount]
    first_seq: int
    last_seq: int

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.counts)


def sqlite_file(path: str | Path) -> Path:
    """The database file of a data directory (or the file itself)."""
    given = Path(path)
    found = given / "opsbus.db" if given.is_dir() else given
    if not found.is_file():
        raise InvalidConfig(f"no opsbus SQLite database at {found}")
    return found


def _open_source(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one snapshot for every table read below
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                             " AND name = 'events'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise InvalidConfig(f"{path} is not an opsbus SQLite database ({exc})") from None
    if found is None:
        conn.close()
        raise InvalidConfig(f"{path} is not an opsbus SQLite database (it has no events)")
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def copy_sqlite_to_postgres(
    source: str | Path, options: PgOptions, *, progress: Progress | None = None,
    period_s: int = DEFAULT_PERIOD_S,
) -> CopyReport:
    """Copy everything in one PostgreSQL transaction (all or nothing) into a store that
    holds no events, items or configuration yet; seqs and ids are kept, so stream
    cursors and links stay valid."""
    report = progress or (lambda _t, _d, _n: None)
    lite = _open_source(sqlite_file(source))
    pg = await connect(options)
    try:
        await check_server(pg)
        await migrate(pg)
        await _refuse_non_empty(pg, options)
        async with pg.transaction():
            first, last = await _copy_events(lite, pg, period_s, report)
            for table in TABLES:
                await _copy_table(lite, pg, table, report)
            for table in SERIAL_TABLES:
                await pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" greatest((SELECT max(id) FROM {table}), 1),"
                    f" (SELECT max(id) FROM {table}) IS NOT NULL)")
        counts = [TableCount("events", _count(lite, "events"),
                             int(await pg.fetchval("SELECT count(*) FROM events")))]
        for table in TABLES:
            if _columns(lite, table):
                counts.append(TableCount(table, _count(lite, table), int(
                    await pg.fetchval(f"SELECT count(*) FROM {table}"))))
        return CopyReport(counts, first, last)
    finally:
        lite.close()
        await pg.close()


async def _refuse_non_empty(pg: asyncpg.Connection, options: PgOptions) -> None:
    held = await pg.fetchval(
        "SELECT (SELECT last_seq FROM log_head) + (SELECT count(*) FROM config_objects)"
        " + (SELECT count(*) FROM todos) + (SELECT count(*) FROM deliveries)")
    if held:
        raise InvalidConfig(f"the PostgreSQL store at {options.redacted()} already holds"
                            " data; copy into an empty database or schema")


def _event_rows(lite: sqlite3.Connection, period_s: int) -> Iterator[list[tuple[Any, ...]]]:
    have = set(_columns(lite, "events"))
    root = "root" if "root" in have else "0"
    cause = "causationid" if "causationid" in have else "NULL"
    # A store of an earlier release keeps its hits in `event_targets` (read-only here, so
    # gathered per event as its migration would; no hits gives no row, so NULL).
    targets = "targets" if "targets" in have else (
        "(SELECT json_group_array(json_array(t.route, t.target,"
        " json(coalesce(CAST(t.detail AS TEXT), '{}')))) FROM event_targets AS t"
        " WHERE t.seq = events.seq GROUP BY t.seq)")
    cursor = lite.execute(
        "SELECT seq, recvtime, source, id, type, subject, time, correlationid,"
        f" {cause}, digest, routes, {targets}, {root}, body FROM events ORDER BY seq")
    period = 0
    while chunk := cursor.fetchmany(CHUNK):
        rows = []
        for (seq, recvtime, src, eid, type_, subject, time, corr, caused, digest, routes,
             hits, root_seq, body) in chunk:
            # Periods never go backwards (as under the append lock), so each partition
            # holds one contiguous run of seqs even if the clock once stepped back.
            period = max(period, period_of(recvtime, period_s))
            rows.append((
                seq, period, recvtime, identity_key(src, eid), src, eid, type_, subject,
                # An empty digest: written by a SQLite store that compares bodies.
                time, corr, caused, link_key(corr), link_key(caused),
                bytes(digest) or digest_of(bytes(body)),
                routes.decode() if isinstance(routes, bytes) else routes,
                hits.decode() if isinstance(hits, bytes) else hits, root_seq or 0,
                bytes(body),
            ))
        yield rows


async def _copy_events(lite: sqlite3.Connection, pg: asyncpg.Connection, period_s: int,
                       report: Progress) -> tuple[int, int]:
    total = _count(lite, "events")
    done, first, last = 0, 0, 0
    periods: set[int] = set()
    for rows in _event_rows(lite, period_s):
        for period in sorted({row[1] for row in rows} - periods):
            await pg.execute("SELECT opsbus_ensure_partition($1, $2)", period, period_s)
            periods.add(period)
        await pg.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
        done += len(rows)
        first = first or rows[0][0]
        last = rows[-1][0]
        report("events", done, total)
    if done:
        current = max(periods)
        await pg.execute(
            "UPDATE log_partitions lp SET first_seq = s.first_seq,"
            " last_seq = CASE WHEN lp.period = $1 THEN NULL ELSE s.last_seq END"
            " FROM (SELECT period, min(seq) AS first_seq, max(seq) AS last_seq"
            "       FROM events GROUP BY period) AS s WHERE s.period = lp.period", current)
        await pg.execute(
            "UPDATE log_head SET last_seq = $1, period = lp.period, period_end = lp.period_end"
            " FROM log_partitions lp WHERE lp.period = $2", last, current)
    return first, last


_BOOLEAN = {"boolean"}
_JSON = {"jsonb", "json"}


async def _copy_table(lite: sqlite3.Connection, pg: asyncpg.Connection, table: str,
                      report: Progress) -> None:
    source_columns = _columns(lite, table)
    if not source_columns:
        return  # an older installation without this feature
    types = {row["column_name"]: row["data_type"] for row in await pg.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1", table)}
    columns = [c for c in source_columns if c in types]
    convert = [_converter(types[c]) for c in columns]
    if table == "counters":  # the migration created them: the source's values win
        await pg.execute("DELETE FROM counters")
    total, done = _count(lite, table), 0
    cursor = lite.execute(f"SELECT {', '.join(columns)} FROM {table}")
    while chunk := cursor.fetchmany(CHUNK):
        rows = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in chunk]
        await pg.copy_records_to_table(table, records=rows, columns=columns)
        done += len(rows)
        report(table, done, total)


def _converter(pg_type: str) -> Callable[[Any], Any]:
    if pg_type in _BOOLEAN:
        return lambda v: None if v is None else bool(v)
    if pg_type in _JSON:
        return lambda v: None if v is None else (v if isinstance(v, str) else v.decode())
    if pg_type == "bytea":
        return lambda v: None if v is None else bytes(v)
    if pg_type == "double precision":
        return lambda v: None if v is None else float(v)
    if pg_type == "text":  # SQLite may hold JSON written as bytes in a TEXT column
        return lambda v: v.decode() if isinstance(v, bytes) else v
    return _same


def _same(value: Any) -> Any:
    return value


def count_lines(report: CopyReport) -> Sequence[str]:
    """The verification table, one line per table."""
    lines = [f"{'table':<22} {'sqlite':>10} {'postgresql':>10}"]
    for c in report.counts:
        mark = "ok" if c.ok else "MISMATCH"
        lines.append(f"{c.table:<22} {c.source:>10,} {c.target:>10,}  {mark}")
    return lines
