"""The store: the one place that talks to the database (see `base.py` for the contract)."""

from __future__ import annotations

from broker.errors import InvalidConfig
from broker.settings import Settings
from broker.store.base import Store, WriteTxn
from broker.store.records import AppendResult, ConfigObject, StoredEvent, TargetRecord


def open_store(settings: Settings) -> Store:
    """The backend named by `settings.store` (not yet opened)."""
    if settings.store == "sqlite":
        from broker.store.sqlite import SqliteStore

        return SqliteStore(settings.db_path, settings.durability, settings.wal_max_bytes)
    from broker.store.postgres.connection import PgOptions, is_postgres_url

    if is_postgres_url(settings.store):
        from broker.store.postgres.store import PgStore

        return PgStore(PgOptions.from_url(settings.store,
                                          poll_s=min(0.5, settings.delivery_poll_s)))
    raise InvalidConfig(f"unknown store backend {settings.store!r}"
                        " (known: sqlite, postgresql://...)")


__all__ = [
    "AppendResult", "ConfigObject", "Store", "StoredEvent", "TargetRecord", "WriteTxn",
    "open_store",
]
