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


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """The config file whose objects are in effect: what every process sharing the
    store compares its own file with before applying it."""

    digest: str
    """Hex digest of the file's objects as validated (comments and layout do not count)."""
    revision: str
    """`[server] config_revision`, or the file's modification time as a stamp."""
    applied_by: str
    """The process (host and listen address) that applied it."""
    applied_at: str
    version: int
    """The configuration version right after it was applied."""


class ConfigWrites(ABC):
    """Configuration writes inside the writer's transaction."""

    @abstractmethod
    async def put(self, kind: str, name: str, spec: dict[str, Any], origin: str, now: str
                  ) -> ConfigObject:
        """Create or replace an object at stamp `now`; bumps the configuration version."""

    @abstractmethod
    async def delete(self, kind: str, name: str) -> bool:
        """Delete an object (bumping the version); False when it did not exist."""

    @abstractmethod
    async def applied_file(self) -> AppliedFile | None:
        """The config file last applied, as this transaction sees it (None: never), for
        a decision written back with `record_file` in the same transaction: the
        transaction is the compare-and-set."""

    @abstractmethod
    async def record_file(self, digest: str, revision: str, applied_by: str, now: str
                          ) -> AppliedFile:
        """Record that this transaction applied a file, at the configuration version
        it reached."""


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

    @abstractmethod
    async def applied(self) -> AppliedFile | None:
        """The config file last applied by any process (None: never)."""
