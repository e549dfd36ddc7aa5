"""The store's maintenance interface: online backup, consistency check, bounded files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Progress = Callable[[int, int], None]
"""Called as work advances with (done, total) in the operation's own unit (pages)."""


@dataclass(frozen=True)
class BackupResult:
    """What a finished backup holds."""

    path: str
    bytes: int
    events: int
    first_seq: int | None
    last_seq: int
    schema_version: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "events": self.events,
                "first_seq": self.first_seq, "last_seq": self.last_seq,
                "schema_version": self.schema_version}


@dataclass(frozen=True)
class Finding:
    """One problem a check found: the check's name and what is wrong."""

    check: str
    detail: str


@dataclass(frozen=True)
class CheckReport:
    """The outcome of a consistency check; `ok` when no check found anything."""

    checks: tuple[str, ...]
    findings: tuple[Finding, ...]
    schema_version: int
    events: int
    last_seq: int

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": list(self.checks),
                "findings": [{"check": f.check, "detail": f.detail} for f in self.findings],
                "schema_version": self.schema_version, "events": self.events,
                "last_seq": self.last_seq}


@dataclass
class StorageStats:
    """Sizes and housekeeping counters, exported as metrics."""

    db_bytes: int = 0
    wal_bytes: int = 0
    checkpoints: int = 0
    """Checkpoints that emptied the write-ahead log."""
    checkpoints_busy: int = 0
    """Attempts that found a reader on an older snapshot and were retried later."""
    frames_copied_background: int = 0
    """Log frames copied back into the database beside the writer."""
    frames_copied_commit: int = 0
    """Log frames copied by the committing thread (before a restart, or at the bound)."""


class Maintenance(ABC):
    """Housekeeping every backend offers; a backend that cannot do one raises
    `Unsupported` naming the tool to use instead (e.g. pg_dump)."""

    @abstractmethod
    async def backup(self, target: Path, progress: Progress | None = None) -> BackupResult:
        """Write a consistent copy of the whole store to `target` while writes go on.

        The copy holds exactly the transactions committed before the call began reading
        (one snapshot); it is written beside `target` and renamed into place when
        complete, so `target` never holds half a backup."""

    @abstractmethod
    async def check(self, quick: bool = False) -> CheckReport:
        """The engine's own integrity check plus opsbus's consistency checks (records
        that point at missing events, a seq counter behind the log, ...)."""

    @abstractmethod
    async def maintain(self) -> None:
        """Periodic housekeeping, called by the broker off the hot path (e.g. truncate
        a write-ahead log that a long reader let grow)."""

    @abstractmethod
    def storage_stats(self) -> StorageStats:
        """Current sizes and counters (cheap: called on every /metrics scrape)."""
