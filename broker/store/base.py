"""The store interface: the contract every backend (SQLite, later PostgreSQL) keeps.

Nothing outside `broker/store/` writes SQL. All writes happen inside a `WriteTxn`
obtained from `Store.transaction()`: the store runs one writer, so a transaction is
serialised with every other write and commits durably when the context exits without
error. Nothing here assumes one process: seq is commit-ordered, claims and leases are
decided in the database, and `wait_for_change` is how other processes' commits are seen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from broker.lineage import RootUse
from broker.store.base_delivery import DeliveryReads, DeliveryWrites
from broker.store.base_maintenance import Maintenance
from broker.store.base_todos import TodoReads, TodoWrites
from broker.store.records import AppendResult, ConfigObject, StoredEvent, TargetRecord


def _nothing() -> None:
    return None


class WriteTxn(TodoWrites, DeliveryWrites, ABC):
    """One write transaction. Methods are coroutines so that a networked backend can
    await; the SQLite backend runs them without a thread hop and only fsyncs at commit."""

    @abstractmethod
    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested savepoint: work inside it is undone if the block raises."""

    # -- events --------------------------------------------------------------------
    @abstractmethod
    async def append_event(
        self, event: dict[str, Any], raw: bytes, recvtime: str, digest: bytes, root: int = 0
    ) -> AppendResult:
        """Append an event unless (source, id) is already stored; `root` is the seq of
        the root event it derives from (0: it is a root).

        Returns the new seq, or the original seq with `duplicate=True` (and
        `conflict=True` when the stored content's digest differs). Seq is assigned in
        commit order: once this transaction commits, no event with a lower seq can
        still commit."""

    @abstractmethod
    async def root_use(self, root: int) -> RootUse:
        """What root event `root` has used of its descendant budget so far."""

    @abstractmethod
    async def add_root_use(self, changes: Sequence[tuple[int, int, bool]]) -> None:
        """Add (root, descendants, noticed) to each root's recorded use."""

    @abstractmethod
    async def append_events(
        self, items: Sequence[tuple[dict[str, Any], bytes, bytes]], recvtime: str
    ) -> list[AppendResult]:
        """`append_event` for many (event, raw, digest) at once, in order; a repeat of
        an earlier item of the same call is a duplicate of it."""

    @abstractmethod
    async def set_routes(self, seq: int, routes: Sequence[str]) -> None:
        """Record which routes an appended event matched."""

    @abstractmethod
    async def set_routes_many(self, items: Sequence[tuple[int, Sequence[str]]]) -> None:
        """`set_routes` for many events at once."""

    @abstractmethod
    async def add_targets(self, records: Sequence[TargetRecord]) -> None:
        """Record route target hits (the derived records that later stages act on)."""

    # -- configuration objects ---------------------------------------------------------
    @abstractmethod
    async def put_config(
        self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
    ) -> ConfigObject:
        """Create or replace a configuration object at stamp `now`; bumps its version."""

    @abstractmethod
    async def delete_config(self, kind: str, name: str) -> bool:
        """Delete a configuration object; False when it did not exist."""


class Store(TodoReads, DeliveryReads, Maintenance, ABC):
    """A backend: opened once per broker process; reads use their own connections."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and open connections."""

    @abstractmethod
    async def close(self) -> None:
        """Finish the current transaction and close every connection."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[WriteTxn]:
        """The single writer's transaction; commits (durably) on clean exit."""

    def start_live(self, publish: Callable[[list[StoredEvent]], None], head: int,
                   on_config: Callable[[], None], on_remote: Callable[[], None] = _nothing,
                   ) -> Callable[[list[StoredEvent]], None]:
        """Wire the live fan-out: returns what the writer hands each committed batch to.
        A backend shared by several processes also feeds `publish` with the others'
        commits, in seq order from `head`, calls `on_remote` after publishing them and
        `on_config` when another process changed the configuration; a single-process
        backend passes batches straight on."""
        return publish

    # -- events --------------------------------------------------------------------
    @abstractmethod
    async def last_seq(self) -> int:
        """The highest committed seq, 0 for an empty log."""

    @abstractmethod
    async def get_event(self, seq: int) -> StoredEvent | None:
        """One event by seq."""

    @abstractmethod
    async def find_event(self, source: str, id: str) -> StoredEvent | None:
        """One event by its CloudEvents identity."""

    @abstractmethod
    async def find_by_id(self, id: str) -> list[StoredEvent]:
        """Events whose `id` is this (any source), oldest first; used to walk causation."""

    @abstractmethod
    async def read_events(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        type: str | None = None,
        source: str | None = None,
        subject: str | None = None,
        since: str | None = None,
        until: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        id: str | None = None,
        descending: bool = False,
    ) -> list[StoredEvent]:
        """A page of events with seq > after (or < after when descending and after>0),
        ordered by seq. Each call is its own short read transaction."""

    @abstractmethod
    async def count_events(self) -> int:
        """Number of stored events."""

    @abstractmethod
    async def targets_of(self, seq: int) -> list[TargetRecord]:
        """The route target hits recorded for an event."""

    # -- configuration objects ---------------------------------------------------------
    @abstractmethod
    async def list_config(self, kind: str | None = None) -> list[ConfigObject]:
        """Configuration objects, by kind then name."""

    @abstractmethod
    async def get_config(self, kind: str, name: str) -> ConfigObject | None:
        """One configuration object."""

    @abstractmethod
    async def config_version(self) -> int:
        """A number that grows whenever any configuration object changes."""
