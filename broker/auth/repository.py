"""The repository contract for named API tokens."""

from __future__ import annotations

from abc import ABC, abstractmethod

from broker.auth.model import TokenRecord
from broker.store.transaction import Transaction


class TokenWrites(ABC):
    """Token writes inside the writer's transaction."""

    @abstractmethod
    async def add(self, record: TokenRecord) -> bool:
        """Store a new token; False (nothing written) when the name is taken."""

    @abstractmethod
    async def revoke(self, name: str) -> bool:
        """Delete a token; False when there was none of that name."""


class TokenRepository(ABC):
    """Named tokens, shared by every process on the backend: a token revoked through one
    replica is gone for every other one at its next lookup."""

    @abstractmethod
    def writes(self, tx: Transaction) -> TokenWrites:
        """Token writes inside `tx`."""

    @abstractmethod
    async def by_digest(self, digest: str) -> TokenRecord | None:
        """The token whose secret hashes to `digest` (hex sha256)."""

    @abstractmethod
    async def all(self) -> list[TokenRecord]:
        """Every token, by name."""
