"""What the catalog needs from a store: its entries, read at start, and a merge of what a
process saw into them, inside the writer's transaction. Each backend implements it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from broker.catalog.model import CatalogEntry
from broker.store.transaction import Transaction


class CatalogWrites(ABC):
    """Catalog writes inside the writer's transaction."""

    @abstractmethod
    async def merge(self, seen: Sequence[CatalogEntry], max_fields: int
                    ) -> list[CatalogEntry]:
        """Add what one process saw since its last flush (`seen`: counts since then, its
        current gap, rate and silence) to the stored entries with `model.combine`,
        holding each row against other writers until COMMIT; the entries as stored."""


class CatalogRepository(ABC):
    """The event catalog of a backend: one entry per (source, type)."""

    @abstractmethod
    def writes(self, tx: Transaction) -> CatalogWrites:
        """Catalog writes inside `tx`."""

    @abstractmethod
    async def entries(self) -> list[CatalogEntry]:
        """Every stored entry."""
