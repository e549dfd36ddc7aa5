"""Event catalog statements on PostgreSQL: each replica merges what it saw under a row
lock, so the counts of several replicas add up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from broker.catalog.model import CatalogEntry, combine
from broker.catalog.repository import CatalogRepository, CatalogWrites
from broker.store.catalog_rows import COLUMNS, row_to_entry, row_values
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

UPSERT = (
    f"INSERT INTO catalog ({COLUMNS}, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    " ON CONFLICT (source, type) DO UPDATE SET first_seen = excluded.first_seen,"
    " last_seen = excluded.last_seen, count = excluded.count, arrivals = excluded.arrivals,"
    " gap_s = excluded.gap_s, rate = excluded.rate, silent = excluded.silent,"
    " shape = excluded.shape, updated_at = excluded.updated_at")


class PgCatalogWrites(CatalogWrites):
    """Catalog writes inside the transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def merge(self, seen: Sequence[CatalogEntry], max_fields: int
                    ) -> list[CatalogEntry]:
        merged = []
        # One order for every replica, so two merging the same pairs cannot deadlock.
        for entry in sorted(seen, key=lambda e: (e.source, e.type)):
            row = await self.conn.fetchrow(
                f"SELECT {COLUMNS} FROM catalog WHERE source = $1 AND type = $2 FOR UPDATE",
                entry.source, entry.type)
            result = combine(row_to_entry(tuple(row)) if row else None, entry, max_fields)
            # A first row written by two replicas at once keeps the later one's counts:
            # only the very first flush of a new pair can race that way.
            await self.conn.execute(UPSERT, *row_values(result), result.last_seen)
            merged.append(result)
        return merged


class PgCatalog(CatalogRepository):
    """The event catalog; reads on the pool."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    @property
    def pool(self) -> asyncpg.Pool:
        return self._source.pool

    def writes(self, tx: Transaction) -> PgCatalogWrites:
        return PgCatalogWrites(transaction_of(tx).conn)

    async def entries(self) -> list[CatalogEntry]:
        rows = await self.pool.fetch(f"SELECT {COLUMNS} FROM catalog ORDER BY source, type")
        return [row_to_entry(tuple(r)) for r in rows]
