"""Named API token statements on PostgreSQL, shared by every replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from broker.auth.model import TokenRecord
from broker.auth.repository import TokenRepository, TokenWrites
from broker.store.postgres.transaction import PoolSource, transaction_of
from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn

TOKEN_COLUMNS = "name, digest, scopes, sources, created_at, created_by"


def row_to_token(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(row["name"], row["digest"], tuple(orjson.loads(row["scopes"])),
                       tuple(orjson.loads(row["sources"])), row["created_at"],
                       row["created_by"])


class PgTokenWrites(TokenWrites):
    """Token writes inside the transaction."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def add(self, record: TokenRecord) -> bool:
        added = await self.conn.fetchval(
            f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (name) DO NOTHING RETURNING 1",
            record.name, record.digest, orjson.dumps(record.scopes).decode(),
            orjson.dumps(record.sources).decode(), record.created_at, record.created_by)
        return added is not None

    async def revoke(self, name: str) -> bool:
        deleted = await self.conn.fetchval(
            "DELETE FROM api_tokens WHERE name = $1 RETURNING 1", name)
        return deleted is not None


class PgTokens(TokenRepository):
    """Tokens; reads on the pool, so a revocation through any replica counts at once."""

    def __init__(self, source: PoolSource) -> None:
        self._source = source

    def writes(self, tx: Transaction) -> PgTokenWrites:
        return PgTokenWrites(transaction_of(tx).conn)

    async def by_digest(self, digest: str) -> TokenRecord | None:
        row = await self._source.pool.fetchrow(
            f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE digest = $1", digest)
        return row_to_token(row) if row else None

    async def all(self) -> list[TokenRecord]:
        rows = await self._source.pool.fetch(
            f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name")
        return [row_to_token(r) for r in rows]
