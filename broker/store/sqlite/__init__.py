"""The embedded SQLite store: one writer connection with group commit, WAL readers."""

from broker.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
