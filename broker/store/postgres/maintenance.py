"""Maintenance on PostgreSQL: consistency checks, partitions ahead of need, sizes.
Backups are the database's own business (pg_dump, base backups and WAL archiving)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from broker.errors import Conflict
from broker.store.base_maintenance import (
    BackupResult,
    CheckReport,
    Finding,
    Progress,
    StorageStats,
)

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

CHECKS: tuple[tuple[str, str], ...] = (
    ("seq-counter", "SELECT 'the log head is ' || h.last_seq || ' but the log reaches '"
     " || e.top FROM log_head h, (SELECT coalesce(max(seq), 0) AS top FROM events) e"
     " WHERE e.top <> h.last_seq"),
    ("seq-gapless", "SELECT 'the log holds ' || n || ' events between seq ' || lo || ' and '"
     " || hi FROM (SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM events) s"
     " WHERE n > 0 AND n <> hi - lo + 1"),
    ("one-active-item-per-key", "SELECT 'queue ' || queue || ' key ' || key || ' has '"
     " || count(*) || ' unresolved items' FROM todos WHERE state <> 'resolved'"
     " GROUP BY queue, key HAVING count(*) > 1"),
    ("queue-counts", "SELECT 'queue ' || coalesce(t.queue, c.queue) || ' holds '"
     " || coalesce(t.n, 0) || ' ' || coalesce(t.state, c.state) || ' items but counts '"
     " || coalesce(c.n, 0) FROM (SELECT queue, state, count(*) AS n FROM todos"
     " GROUP BY queue, state) t FULL JOIN (SELECT queue, state, sum(n) AS n FROM"
     " (SELECT queue, state, n FROM queue_counts UNION ALL SELECT queue, state, n"
     " FROM queue_counts_delta) d GROUP BY queue, state) c"
     " ON c.queue = t.queue AND c.state = t.state"
     " WHERE coalesce(t.n, 0) <> coalesce(c.n, 0)"),
    ("item-events-stored", "SELECT 'item ' || t.todo_id || ' holds seq ' || t.seq"
     " || ', which is not stored' FROM todo_events t WHERE NOT EXISTS"
     " (SELECT 1 FROM events e WHERE e.seq = t.seq) LIMIT 20"),
    ("delivery-events-stored", "SELECT 'delivery ' || d.id || ' is of seq ' || d.seq"
     " || ', which is not stored' FROM deliveries d WHERE NOT EXISTS"
     " (SELECT 1 FROM events e WHERE e.seq = d.seq) LIMIT 20"),
)
"""(name, query returning one line per problem found)."""


class PgMaintenance:
    """Mixed into PgBackend."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # the backend's open pool

    period_s: int
    _stats: StorageStats

    async def ensure_partitions(self, conn: Conn | asyncpg.Pool) -> None:
        """Create the current and the next period's partitions ahead of need, so that no
        append runs DDL (which would lock the log against readers until it commits)."""
        # The database's clock: every replica agrees on it (the broker's own clock may be
        # a test's manual one; partitions only need to exist before they are written).
        epoch = int(await conn.fetchval("SELECT extract(epoch FROM now())::bigint"))
        current = epoch - epoch % self.period_s
        for period in (current, current + self.period_s):
            await conn.execute("SELECT opsbus_ensure_partition($1, $2)", period, self.period_s)

    async def backup(self, target: Path, progress: Progress | None = None) -> BackupResult:
        raise Conflict("the PostgreSQL store is backed up by PostgreSQL: use pg_dump (or base"
                       " backups with WAL archiving); opsbus backup is for the SQLite store")

    async def check(self, quick: bool = False) -> CheckReport:
        findings: list[Finding] = []
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                  readonly=True):
            for name, sql in CHECKS:
                if quick and name.endswith("-stored"):
                    continue  # the scans over whole tables
                findings += [Finding(name, str(row[0])) for row in await conn.fetch(sql)]
            events = int(await conn.fetchval("SELECT count(*) FROM events"))
            last = int(await conn.fetchval("SELECT last_seq FROM log_head"))
            version = int(await conn.fetchval("SELECT max(version) FROM opsbus_migrations"))
        return CheckReport(tuple(n for n, _ in CHECKS), tuple(findings), version, events, last)

    async def maintain(self) -> None:
        await self.ensure_partitions(self.pool)
        # Item changes leave +1/-1 rows (no hot counter row); fold them so reads of the
        # counts stay a handful of rows.
        await self.pool.execute("SELECT opsbus_fold_queue_counts()")
        self._stats.db_bytes = int(await self.pool.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"))

    def storage_stats(self) -> StorageStats:
        return self._stats
