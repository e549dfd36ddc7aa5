"""SQLite statements for named API tokens."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from broker.auth.model import TokenRecord
from broker.auth.repository import TokenRepository, TokenWrites
from broker.store.sqlite.connections import ReaderPool
from broker.store.sqlite.transaction import connection_of
from broker.store.transaction import Transaction

TOKEN_COLUMNS = "name, digest, scopes, sources, created_at, created_by"


def row_to_token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(row[0], row[1], tuple(orjson.loads(row[2])),
                       tuple(orjson.loads(row[3])), row[4], row[5])


class SqliteTokenWrites(TokenWrites):
    """Token writes on the writer connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def add(self, record: TokenRecord) -> bool:
        cursor = self.conn.execute(
            f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (record.name, record.digest, orjson.dumps(record.scopes).decode(),
             orjson.dumps(record.sources).decode(), record.created_at, record.created_by))
        return cursor.rowcount > 0

    async def revoke(self, name: str) -> bool:
        cursor = self.conn.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
        return cursor.rowcount > 0


class SqliteTokens(TokenRepository):
    """Tokens in `api_tokens`; reads on the reader pool."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers

    def writes(self, tx: Transaction) -> SqliteTokenWrites:
        return SqliteTokenWrites(connection_of(tx))

    async def by_digest(self, digest: str) -> TokenRecord | None:
        row = await self._readers.fetchone(
            f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE digest = ?", (digest,))
        return row_to_token(row) if row else None

    async def all(self) -> list[TokenRecord]:
        rows = await self._readers.fetchall(
            f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name")
        return [row_to_token(r) for r in rows]
