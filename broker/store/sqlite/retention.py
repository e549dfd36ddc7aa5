"""SQLite statements for retention: scans by seq, the removal that keeps what is still
needed, and handing freed pages back to the file system."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from broker.retention.policy import Candidate
from broker.retention.repository import LogUsage, Removal, RetentionRepository, RetentionWrites
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.periods import KEPT, drop_passed
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction

CHUNK = 500

# Every query is bounded by what is open, not by the log: the partial indexes
# `todos_active_key`, `deliveries_open_by_seq` and `action_jobs_due` hold open rows only.
NEEDED = """
SELECT te.seq FROM todos t JOIN todo_events te ON te.todo_id = t.id
 WHERE t.state <> 'resolved' AND te.seq BETWEEN :lo AND :hi
UNION SELECT event_seq FROM todos WHERE state <> 'resolved' AND event_seq BETWEEN :lo AND :hi
UNION SELECT first_event_seq FROM todos
 WHERE state <> 'resolved' AND first_event_seq BETWEEN :lo AND :hi
UNION SELECT seq FROM deliveries
 WHERE state IN ('pending', 'leased') AND seq BETWEEN :lo AND :hi
UNION SELECT seq FROM action_jobs
 WHERE state IN ('pending', 'running') AND seq BETWEEN :lo AND :hi
"""


class SqliteRetentionWrites(RetentionWrites):
    """Removal on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def remove(self, seqs: Sequence[int], cut: int | None = None) -> Removal:
        needed = 0
        removed = 0
        if seqs:
            held = {row[0] for row in self.conn.execute(
                NEEDED, {"lo": min(seqs), "hi": max(seqs)})}
            going = [s for s in seqs if s not in held]
            needed = len(seqs) - len(going)
            for at in range(0, len(going), CHUNK):
                chunk = going[at:at + CHUNK]
                marks = ", ".join("?" * len(chunk))
                removed += self.conn.execute(
                    f"DELETE FROM events WHERE seq IN ({marks})", chunk).rowcount
                self.conn.execute(f"DELETE FROM event_lineage WHERE root IN ({marks})", chunk)
                # Keys in a period's table stay until the table goes (a key whose event
                # is gone finds nothing); kept keys are few and go with their event.
                self.conn.execute(f"DELETE FROM {KEPT} WHERE seq IN ({marks})", chunk)
        self.conn.execute(
            "UPDATE log_retention SET removed = removed + ?, cut = max(cut, ?) WHERE id = 1",
            (removed, cut or 0))
        if cut:
            drop_passed(self.conn, cut)
        return Removal(removed, needed)

    async def reclaim(self, pages: int) -> int:
        self.conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        (free,) = self.conn.execute("PRAGMA freelist_count").fetchone()
        (mode,) = self.conn.execute("PRAGMA auto_vacuum").fetchone()
        # A store created before incremental vacuum reuses its free pages instead.
        return int(free) if mode == 2 else 0


class SqliteRetention(RetentionRepository):
    """Retention reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteRetentionWrites:
        return SqliteRetentionWrites(connection_of(tx))

    async def cut(self) -> int:
        row = await self._readers.fetchone("SELECT cut FROM log_retention WHERE id = 1")
        return int(row[0]) if row else 0

    async def scan(self, after: int, limit: int, upto: int | None = None
                   ) -> list[Candidate]:
        rows = await self._readers.fetchall(
            "SELECT seq, type, recvtime FROM events WHERE seq > ? AND seq <= ?"
            " ORDER BY seq LIMIT ?", (after, upto if upto is not None else 2**63 - 1, limit))
        return [Candidate(r[0], r[1], r[2]) for r in rows]

    async def usage(self, count: bool, size: bool) -> LogUsage:
        events = 0
        used = 0
        if count:
            row = await self._readers.fetchone("SELECT count(*) FROM events")
            events = int(row[0]) if row else 0
        if size:
            row = await self._readers.fetchone(
                "SELECT (p.page_count - f.freelist_count) * s.page_size"
                " FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s")
            used = int(row[0]) if row else 0
        return LogUsage(events, used)
