"""The retention repository: what a backend provides for removing old events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from broker.retention.policy import Candidate
from broker.store.transaction import Transaction


@dataclass(frozen=True, slots=True)
class LogUsage:
    """How much the log holds: events, and bytes of the store they live in."""

    events: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Removal:
    """What one removal did: events removed, and events kept because something still
    needs them (an unresolved item, an open delivery, a pending action job)."""

    removed: int
    needed: int


class RetentionWrites(ABC):
    """Retention's writes inside the writer's transaction."""

    @abstractmethod
    async def remove(self, seqs: Sequence[int], cut: int | None = None) -> Removal:
        """Delete these events (with their route target hits) except those something
        still needs, decided here, in this transaction: an event of an unresolved todo
        item, a delivery `pending` or `leased`, an action job `pending` or `running`.
        With `cut`, every seq at or below it has now been examined: it becomes the
        retained range's start (`EventLog.retained_from` is cut + 1)."""

    @abstractmethod
    async def reclaim(self, pages: int) -> int:
        """Hand up to `pages` free pages back to the file system; how many remain free
        (0 where the database reclaims space itself)."""


class RetentionRepository(ABC):
    """Reads for the retention service; writes via `writes(tx)`."""

    @abstractmethod
    def writes(self, tx: Transaction) -> RetentionWrites:
        """Retention's writes inside `tx`."""

    @abstractmethod
    async def cut(self) -> int:
        """The highest seq retention has examined (0: none yet)."""

    @abstractmethod
    async def scan(self, after: int, limit: int, upto: int | None = None
                   ) -> list[Candidate]:
        """Stored events with after < seq (<= upto), oldest first, at most `limit`."""

    @abstractmethod
    async def usage(self, count: bool, size: bool) -> LogUsage:
        """Events stored (when `count`) and bytes the store uses (when `size`); 0 for
        what was not asked (counting a large log is not free)."""
