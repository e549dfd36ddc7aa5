"""The PostgreSQL write transaction: one pooled connection inside a transaction that
holds the log's lock (`log_head`), and what repositories read their pool from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from broker.store.transaction import Transaction, settle_gathered

if TYPE_CHECKING:
    import asyncpg

    from broker.store.postgres.connection import Conn


class PoolSource(Protocol):
    """Where repositories find the connection pool (open only while the store is)."""

    @property
    def pool(self) -> asyncpg.Pool: ...


class Deferred(Protocol):
    """Writes a repository gathers during the transaction and writes at its end (one
    `executemany` for many rows, one UPDATE for many changes of one row): the round
    trips a row costs are paid while the transaction holds the log's lock. A savepoint
    that rolls back undoes what was gathered inside it, as it undoes its statements."""

    def mark(self) -> Any:
        """A point to undo to."""

    def undo(self, mark: Any) -> None:
        """Forget what was gathered since `mark` (None: since the start)."""

    async def flush(self) -> None:
        """Write everything gathered, on the transaction's connection."""


D = TypeVar("D", bound=Deferred)


class PgTransaction(Transaction):
    """A write transaction on one pooled connection, holding the log's lock."""

    def __init__(self, conn: Conn, period_s: int, window: int = 2) -> None:
        self.conn = conn
        self.period_s = period_s
        self.window = window
        self._savepoints = 0
        self._open = 0
        """Savepoints open now (`_savepoints` counts every one, for unique names)."""
        self._deferred: dict[str, Deferred] = {}

    def deferred(self, key: str, make: Callable[[Conn], D]) -> D:
        """The repository's gathered writes in this transaction (made on first use)."""
        found = self._deferred.get(key)
        if found is None:
            found = self._deferred[key] = make(self.conn)
            if self._open:  # made inside a savepoint: undone from its start
                found.mark()
        return found  # type: ignore[return-value]

    async def flush(self) -> None:
        """Write every repository's gathered writes (before COMMIT)."""
        for deferred in self._deferred.values():
            await deferred.flush()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        marks = {key: d.mark() for key, d in self._deferred.items()}
        self._open += 1
        try:
            await self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                await self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                for key, deferred in self._deferred.items():
                    deferred.undo(marks.get(key))
                raise
            # No RELEASE: COMMIT releases every savepoint, and each round trip here is
            # paid while the transaction holds the log's lock.
        finally:
            self._open -= 1
            if not self._open:
                settle_gathered(self._deferred.values())



def transaction_of(tx: Transaction) -> PgTransaction:
    """The PostgreSQL transaction behind one this backend opened."""
    if not isinstance(tx, PgTransaction):
        raise TypeError(f"not a PostgreSQL transaction: {tx!r}")
    return tx
