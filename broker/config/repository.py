"""Configuration objects as stored: the record and the repository contract for them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from broker.store.transaction import Transaction


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """A named configuration object (route, queue, subscription, action, proxy mount) and
    where it came from: `file` (opsbus.toml, changed only by editing the file) or `api`."""

    kind: str
    name: str
    spec: dict[str, Any]
    origin: str
    version: int
    updated_at: str


class ConfigWrites(ABC):
    """Configuration writes inside the writer's transaction."""

    @abstractmethod
    async def put(self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
                  ) -> ConfigObject:
        """Create or replace an object at stamp `now`; bumps the configuration version."""

    @abstractmethod
    async def delete(self, kind: str, name: str) -> bool:
        """Delete an object (bumping the version); False when it did not exist."""


class ConfigRepository(ABC):
    """The configuration objects of a backend, shared by every process that uses it:
    a change made through one process is seen by the others at their next read (they
    compare `version`)."""

    @abstractmethod
    def writes(self, tx: Transaction) -> ConfigWrites:
        """Configuration writes inside `tx`."""

    @abstractmethod
    async def objects(self, kind: str | None = None) -> list[ConfigObject]:
        """Objects, by kind then name."""

    @abstractmethod
    async def get(self, kind: str, name: str) -> ConfigObject | None:
        """One object."""

    @abstractmethod
    async def version(self) -> int:
        """A number that grows whenever any object changes."""
