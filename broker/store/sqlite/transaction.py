"""The SQLite write transaction: the writer connection inside BEGIN IMMEDIATE, and the
writes repositories defer to its end."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from broker.store.sqlite.connections import WriterConnection
from broker.store.transaction import Transaction, settle_gathered


class Deferred(Protocol):
    """Writes a repository gathers during the transaction and writes at its end (one
    `executemany` for many rows, one UPDATE for many changes of one row). A savepoint
    that rolls back undoes what was gathered inside it, as it undoes its statements."""

    def mark(self) -> Any:
        """A point to undo to."""

    def undo(self, mark: Any) -> None:
        """Forget what was gathered since `mark` (None: since the start)."""

    def flush(self) -> None:
        """Write everything gathered, on the transaction's connection."""


D = TypeVar("D", bound=Deferred)


class SqliteTransaction(Transaction):
    """A transaction on the writer connection. SQLite has one writer, so every row read
    inside it is as good as locked until it ends."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._savepoints = 0
        self._deferred: dict[str, Deferred] = {}

    def deferred(self, key: str, make: Callable[[sqlite3.Connection], D]) -> D:
        """The repository's gathered writes in this transaction (made on first use)."""
        found = self._deferred.get(key)
        if found is None:
            found = self._deferred[key] = make(self.conn)
            if self._savepoints:  # made inside a savepoint: undone from its start
                found.mark()
        return found  # type: ignore[return-value]

    def flush(self) -> None:
        """Write every repository's gathered writes (before COMMIT)."""
        for deferred in self._deferred.values():
            deferred.flush()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        # Named by depth, not by count: a name applies to the innermost open savepoint
        # so nested ones stay distinct, and the few statements repeat, so the
        # connection's statement cache prepares each once instead of per unit of work.
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        marks = {key: d.mark() for key, d in self._deferred.items()}
        conn = self.conn
        # On the writer connection held inserts stay held across it.
        held = conn if isinstance(conn, WriterConnection) else None
        if held is not None:
            held.savepoint(name)
        else:
            conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if held is not None:
                held.rollback_to(name)
                held.release(name)
            else:
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            for key, deferred in self._deferred.items():
                deferred.undo(marks.get(key))
            raise
        else:
            if held is not None:
                held.release(name)
            else:
                conn.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1
            if not self._savepoints:
                settle_gathered(self._deferred.values())



def connection_of(tx: Transaction) -> sqlite3.Connection:
    """The writer connection behind a transaction this backend opened."""
    return sqlite_transaction(tx).conn


def sqlite_transaction(tx: Transaction) -> SqliteTransaction:
    """`tx` as the SQLite transaction this backend opened."""
    if not isinstance(tx, SqliteTransaction):
        raise TypeError(f"not a SQLite transaction: {tx!r}")
    return tx
