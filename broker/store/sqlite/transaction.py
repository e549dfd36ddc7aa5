"""The SQLite write transaction: the writer connection inside BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from broker.store.transaction import Transaction


class SqliteTransaction(Transaction):
    """A transaction on the writer connection. SQLite has one writer, so every row read
    inside it is as good as locked until it ends."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._savepoints = 0

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")


def connection_of(tx: Transaction) -> sqlite3.Connection:
    """The writer connection behind a transaction this backend opened."""
    if not isinstance(tx, SqliteTransaction):
        raise TypeError(f"not a SQLite transaction: {tx!r}")
    return tx.conn
