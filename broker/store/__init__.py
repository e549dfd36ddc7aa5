"""The store: the one place that talks to a database. `base.py` is the contract a
backend keeps; each backend lives in its own package and is imported only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.clock import Clock
    from broker.settings import Settings
    from broker.store.base import Backend


def open_backend(settings: Settings, clock: Clock | None = None) -> Backend:
    """The backend named by `settings.store` (not yet opened); a backend that waits for
    time (PostgreSQL's fallback polls) waits on `clock`."""
    from broker.errors import InvalidConfig
    from broker.retention.policy import policy_of

    if settings.store == "sqlite":
        from broker.store.sqlite import SqliteBackend

        return SqliteBackend(settings.db_path, settings.durability, settings.wal_max_bytes,
                             window=policy_of(settings).window,
                             wal_checkpoint_bytes=settings.wal_checkpoint_bytes)
    from broker.store.postgres.connection import PgOptions, is_postgres_url

    if is_postgres_url(settings.store):
        from broker.store.postgres.backend import PgBackend

        window = policy_of(settings).window
        return PgBackend(PgOptions.from_url(settings.store,
                                            poll_s=min(0.5, settings.delivery_poll_s)),
                         clock=clock, period_s=window.period_s, window=window.periods)
    raise InvalidConfig(f"unknown store backend {settings.store!r}"
                        " (known: sqlite, postgresql://...)")


__all__ = ["open_backend"]
