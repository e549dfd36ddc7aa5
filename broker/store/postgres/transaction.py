"""The PostgreSQL write transaction: one pooled connection inside a transaction that
holds the log's lock (`log_head`), and what repositories read their pool from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from broker.store.transaction import Transaction

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn


class PoolSource(Protocol):
    """Where repositories find the connection pool (open only while the store is)."""

    @property
    def pool(self) -> asyncpg.Pool: ...


class PgTransaction(Transaction):
    """A write transaction on one pooled connection, holding the log's lock."""

    def __init__(self, conn: Conn, period_s: int, window: int = 2) -> None:
        self.conn = conn
        self.period_s = period_s
        self.window = window
        self._savepoints = 0

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        await self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        # No RELEASE: COMMIT releases every savepoint, and each round trip here is paid
        # while the transaction holds the log's lock.


def transaction_of(tx: Transaction) -> PgTransaction:
    """The PostgreSQL transaction behind one this backend opened."""
    if not isinstance(tx, PgTransaction):
        raise TypeError(f"not a PostgreSQL transaction: {tx!r}")
    return tx
