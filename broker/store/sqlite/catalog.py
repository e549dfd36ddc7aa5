"""SQLite statements for the event catalog."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from broker.catalog.model import CatalogEntry, combine
from broker.catalog.repository import CatalogRepository, CatalogWrites
from broker.store.catalog_rows import COLUMNS, row_to_entry, row_values
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction


class SqliteCatalogWrites(CatalogWrites):
    """Catalog writes on the writer connection (the one writer: no row locks needed)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def merge(self, seen: Sequence[CatalogEntry], max_fields: int
                    ) -> list[CatalogEntry]:
        merged = []
        for entry in seen:
            row = self.conn.execute(f"SELECT {COLUMNS} FROM catalog WHERE source = ? AND"
                                    " type = ?", (entry.source, entry.type)).fetchone()
            result = combine(row_to_entry(row) if row else None, entry, max_fields)
            self.conn.execute(
                f"INSERT OR REPLACE INTO catalog ({COLUMNS}, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row_values(result), result.last_seen))
            merged.append(result)
        return merged


class SqliteCatalog(CatalogRepository):
    """The catalog in `catalog`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteCatalogWrites:
        return SqliteCatalogWrites(connection_of(tx))

    async def entries(self) -> list[CatalogEntry]:
        rows = await self._readers.fetchall(f"SELECT {COLUMNS} FROM catalog"
                                            " ORDER BY source, type", ())
        return [row_to_entry(r) for r in rows]
