"""The embedded SQLite backend: one writer connection with group commit, WAL readers."""

from broker.store.sqlite.backend import SqliteBackend

__all__ = ["SqliteBackend"]
