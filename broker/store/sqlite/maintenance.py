"""SQLite housekeeping: online backup, consistency checks and a bounded write-ahead log."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path

from broker.errors import IncompatibleStore
from broker.store.base_maintenance import (
    BackupResult,
    CheckReport,
    Finding,
    Maintenance,
    Progress,
    StorageStats,
)
from broker.store.migrations import migrations
from broker.store.sqlite.checkpoint import Checkpointer

log = logging.getLogger(__name__)

BACKUP_STEP_PAGES = 1024
"""Pages copied per backup step (4 MiB at the default page size): one progress report."""

DEFAULT_WAL_MAX_BYTES = 64 * 1024 * 1024

SQLITE_MAGIC = b"SQLite format 3\x00"

CONSISTENCY_CHECKS: tuple[tuple[str, int, str], ...] = (
    # Resolved items may outlive their events (retention keeps only what is needed).
    ("item events exist", 1,
     "SELECT 'item ' || id || ' (' || state || ') points at missing event ' || s"
     " FROM (SELECT id, state, event_seq AS s FROM todos WHERE state <> 'resolved'"
     "       UNION ALL SELECT id, state, first_event_seq FROM todos"
     "       WHERE state <> 'resolved')"
     " WHERE NOT EXISTS (SELECT 1 FROM events WHERE seq = s)"),
    ("seq counter not behind the log", 1,
     "SELECT 'the seq counter is at ' || coalesce(c.seq, 0) || ' but the log holds seq '"
     " || m.seq || ': new events would reuse seqs readers have seen'"
     " FROM (SELECT max(seq) AS seq FROM events) m"
     " LEFT JOIN sqlite_sequence c ON c.name = 'events'"
     " WHERE m.seq IS NOT NULL AND coalesce(c.seq, 0) < m.seq"),
    ("one active item per group key", 1,
     "SELECT 'queue ' || queue || ' key ' || key || ' has ' || count(*) || ' active items'"
     " FROM todos WHERE state <> 'resolved' GROUP BY queue, key HAVING count(*) > 1"),
    ("queue counts match the items", 8,
     "SELECT 'queue ' || queue || ' holds ' || sum(held) || ' ' || state"
     " || ' items but counts ' || sum(counted) FROM (SELECT queue, state, 1 AS held,"
     " 0 AS counted FROM todos UNION ALL SELECT queue, state, 0, n FROM queue_counts)"
     " GROUP BY queue, state HAVING sum(held) <> sum(counted)"),
    ("every period has its key table", 13,
     "SELECT 'period ' || name || ' (seqs from ' || first_seq || ') has no key table:"
     " lookups and dedupe miss its events' FROM event_key_periods"
     " WHERE name NOT IN (SELECT name FROM sqlite_master WHERE type = 'table')"),
    ("leased work has a lease", 1,
     "SELECT 'delivery ' || id || ' is leased without a lease id' FROM deliveries"
     " WHERE state = 'leased' AND lease IS NULL"),
)
"""(name, schema version it applies from, query): each row a query returns is a problem
it describes. A store from an earlier release is checked by what its schema holds; the
rest applies once opening it has migrated it. Cross-record invariants the engine's own
checks do not see; references declared as foreign keys are checked by
`PRAGMA foreign_key_check`."""

MAX_FINDINGS_PER_CHECK = 20


def latest_schema_version() -> int:
    return migrations("sqlite")[-1][0]


def schema_version_of(conn: sqlite3.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def refuse_newer_schema(version: int, where: object) -> None:
    """IncompatibleStore when `where` was written by a newer opsbus than this one."""
    latest = latest_schema_version()
    if version > latest:
        from broker import __version__

        raise IncompatibleStore(
            f"{where} has schema version {version}, newer than this opsbus {__version__}"
            f" understands (up to {latest}): use the opsbus release that wrote it, or a"
            f" newer one", schema_version=version, supported=latest)


def fold_wal(path: Path) -> None:
    """Checkpoint the write-ahead log into the database file and truncate it, so the
    file is complete on its own (before it is moved aside)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _log_span(conn: sqlite3.Connection) -> tuple[int, int | None, int]:
    """(events, first seq, last seq) in the current snapshot."""
    count, first, last = conn.execute("SELECT count(*), min(seq), max(seq) FROM events"
                                      ).fetchone()
    return int(count), first, int(last or 0)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_file(source: Path, target: Path, progress: Progress | None = None) -> BackupResult:
    """Copy the database at `source` to `target` from one read snapshot (blocking).

    The source connection holds a read transaction across every backup step, so the
    copy is one consistent snapshot and writers (other connections, other processes)
    never make it restart. The copy is switched to rollback-journal mode so it is one
    self-contained file, fsynced, then renamed into place."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = _connect(source)
    try:
        src.execute("PRAGMA query_only=ON")
        src.execute("BEGIN")
        events, first, last = _log_span(src)  # also pins the snapshot the copy reads
        version = schema_version_of(src)
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            src.backup(dst, pages=BACKUP_STEP_PAGES,
                       progress=(lambda _s, left, total: progress(total - left, total))
                       if progress else None)
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    _fsync_path(partial)
    partial.replace(target)
    _fsync_path(target.parent)
    return BackupResult(str(target), target.stat().st_size, events, first, last, version)


def inspect_file(path: Path) -> tuple[int, int, int | None, int]:
    """(schema version, events, first seq, last seq) of a database file, read-only.
    IncompatibleStore when it is not an opsbus store at all."""
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise IncompatibleStore(f"{path} is not an SQLite database (nor an opsbus backup)")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                           isolation_level=None)
    try:
        has_events = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
        version = schema_version_of(conn)
        if not has_events or version < 1:
            raise IncompatibleStore(f"{path} is an SQLite database but not an opsbus store")
        return (version, *_log_span(conn))
    finally:
        conn.close()


def check_file(path: Path, quick: bool = False) -> CheckReport:
    """Run every check on one read snapshot of the database (blocking)."""
    conn = _connect(path)
    findings: list[Finding] = []
    checks: list[str] = []

    def record(check: str, details: list[str]) -> None:
        checks.append(check)
        for detail in details[:MAX_FINDINGS_PER_CHECK]:
            findings.append(Finding(check, detail))
        if len(details) > MAX_FINDINGS_PER_CHECK:
            findings.append(Finding(check, f"... and {len(details) - MAX_FINDINGS_PER_CHECK}"
                                           " more"))

    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("BEGIN")
        version = schema_version_of(conn)
        latest = latest_schema_version()
        record("schema version", [] if 1 <= version <= latest else [
            f"schema version {version}; this opsbus knows 1 to {latest}"])
        pragma = "quick_check" if quick else "integrity_check"
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
        record(pragma, [] if rows == ["ok"] else rows)
        record("foreign keys", [
            f"{table} row {rowid} points at a missing {parent} row"
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")])
        for name, since, sql in CONSISTENCY_CHECKS:
            if version < since:
                continue
            try:
                record(name, [r[0] for r in conn.execute(
                    f"{sql} LIMIT {MAX_FINDINGS_PER_CHECK + 1}")])
            except sqlite3.DatabaseError as exc:  # a table missing from a damaged file
                record(name, [f"could not run: {exc}"])
        events, _, last = _log_span(conn)
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        # The file is too damaged for a read transaction: that is the finding.
        return CheckReport((*checks, "readable"), (*findings, Finding("readable", str(exc))),
                           0, 0, 0)
    finally:
        conn.close()
    return CheckReport(tuple(checks), tuple(findings), version, events, last)


class WalGuard:
    """Keeps the write-ahead log under `limit` bytes.

    SQLite's automatic checkpoints copy the log back into the database but never shrink
    the file, and cannot reach past a reader's snapshot: one long reader lets the log
    grow, and the file stays that large for good. After each commit (and from the
    periodic maintenance) the guard looks at the log's size; past the limit it runs a
    TRUNCATE checkpoint, which succeeds once no reader holds an older snapshot and then
    empties the file. It never waits for readers: a busy attempt is retried at the next
    commit or tick. `journal_size_limit` also trims the file whenever SQLite restarts
    the log on its own."""

    def __init__(self, db_path: Path, limit: int = DEFAULT_WAL_MAX_BYTES) -> None:
        self.db_path = db_path
        self.wal_path = db_path.with_name(db_path.name + "-wal")
        self.limit = limit
        self.checkpoints = 0
        self.busy = 0
        self._conn: sqlite3.Connection | None = None

    def attach(self, writer: sqlite3.Connection) -> None:
        writer.execute(f"PRAGMA journal_size_limit={self.limit}")

    def wal_bytes(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def over_limit(self) -> bool:
        return self.wal_bytes() > self.limit

    def truncate(self) -> bool:
        """One TRUNCATE checkpoint attempt (blocking; the caller holds the write lock so
        no writer of ours waits on it). True when the log was emptied."""
        try:
            if self._conn is None:
                # Its own connection with no busy wait: a reader on an old snapshot makes
                # the attempt return at once instead of stalling the writer behind it.
                self._conn = sqlite3.connect(self.db_path, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("PRAGMA busy_timeout=0")
            busy, wal_frames, done = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"
                                                        ).fetchone()
        except sqlite3.Error as exc:
            # Runs after a commit that succeeded (a full disk, say): it must never turn
            # that commit into an error. The log stays as it is until the next attempt.
            self.busy += 1
            log.warning("WAL checkpoint failed: %s", exc)
            return False
        if busy:
            self.busy += 1
            log.debug("WAL checkpoint busy: %s of %s frames copied, a reader holds an older"
                      " snapshot", done, wal_frames)
            return False
        self.checkpoints += 1
        return True

    async def after_commit(self) -> None:
        """Truncate the log if it is past the limit (awaited inside the write lock)."""
        if self.over_limit():
            attempt = asyncio.ensure_future(asyncio.to_thread(self.truncate))
            try:
                await asyncio.shield(attempt)
            except asyncio.CancelledError:
                await asyncio.wait([attempt])  # never leave the connection mid-checkpoint
                raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteMaintenance(Maintenance):
    """The maintenance methods of the SQLite store (mixed into it)."""

    path: Path
    _wal: WalGuard
    _checkpoints: Checkpointer
    _write_lock: asyncio.Lock
    _writer: sqlite3.Connection | None

    async def backup(self, target: Path, progress: Progress | None = None) -> BackupResult:
        return await asyncio.to_thread(backup_file, self.path, target, progress)

    async def check(self, quick: bool = False) -> CheckReport:
        return await asyncio.to_thread(check_file, self.path, quick)

    async def maintain(self) -> None:
        if self._wal.over_limit():
            async with self._write_lock:
                if self._writer is not None:  # not closed meanwhile
                    await self._wal.after_commit()

    def storage_stats(self) -> StorageStats:
        try:
            db_bytes = self.path.stat().st_size
        except FileNotFoundError:
            db_bytes = 0
        return StorageStats(db_bytes=db_bytes, wal_bytes=self._wal.wal_bytes(),
                            checkpoints=self._wal.checkpoints,
                            checkpoints_busy=self._wal.busy,
                            frames_copied_background=self._checkpoints.background_frames,
                            frames_copied_commit=self._checkpoints.writer_frames)
