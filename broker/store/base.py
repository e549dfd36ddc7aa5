"""The backend contract: what a store must provide for opsbus to run on it.

A backend bundles one repository per feature (each interface lives with its feature and
its docstrings are the contract) and the writer's transaction they all write in. Nothing
outside `broker/store/` writes SQL; rows leave a backend as the features' typed records.

Nothing here assumes one process. Several `opsbus serve` processes may share a backend
(PostgreSQL): seq stays commit-ordered across them (`EventLog`), claims and leases are
decided inside the database (`Transaction`), and `start_live` feeds a process's live
readers with the others' commits in order and tells it when to look for new work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from broker.actions.repository import JobRepository
from broker.auth.repository import TokenRepository
from broker.bus.log import EventLog, StoredEvent
from broker.catalog.repository import CatalogRepository
from broker.config.repository import ConfigRepository
from broker.delivery.repository import DeliveryRepository
from broker.retention.repository import RetentionRepository
from broker.store.base_maintenance import Maintenance
from broker.store.transaction import Transaction
from broker.todos.repository import SilenceRepository, TodoRepository

Publish = Callable[[list[StoredEvent]], None]
"""Takes committed events, in seq order (the hub's `publish`)."""


class Backend(Maintenance, ABC):
    """A store: opened once per process; the repositories read on their own connections.
    Housekeeping (backup, check, maintain, storage stats) is `Maintenance`."""

    events: EventLog
    config: ConfigRepository
    todos: TodoRepository
    silences: SilenceRepository
    deliveries: DeliveryRepository
    jobs: JobRepository
    catalog: CatalogRepository
    retention: RetentionRepository
    tokens: TokenRepository

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and open connections."""

    @abstractmethod
    async def close(self) -> None:
        """Finish the current transaction and close every connection."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """The writer's transaction; commits durably on clean exit, rolls back on error.
        One process opens one at a time (its bus's writer)."""

    def start_live(self, publish: Publish, head: int, on_config: Callable[[], None],
                   on_remote: Callable[[], None]) -> Publish:
        """Wire the live fan-out; returns what the writer hands each committed batch to.

        A backend shared by several processes (PostgreSQL) also feeds `publish` with the
        others' commits, strictly in seq order from `head` (the table is the truth, a
        notification the wake-up), calls `on_remote` after handing out events another
        process committed and `on_config` when another process changed the
        configuration. A backend only this process writes to (SQLite) passes batches
        straight on."""
        return publish
