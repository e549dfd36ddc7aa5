"""Versioned schema migrations for PostgreSQL, applied once per schema under a lock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from broker.errors import InvalidConfig
from broker.store.migrations import migrations
from broker.store.postgres.driver import asyncpg_module

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x6F707362  # "opsb": the first of two advisory-lock keys, ours alone


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply every migration not yet applied to the connection's schema, in one
    transaction; replicas starting together wait for each other. Returns the version."""
    driver = asyncpg_module()
    try:
        return await _migrate(conn)
    except driver.PostgresError as exc:
        schema = await conn.fetchval("SELECT current_setting('search_path')")
        raise InvalidConfig(f"cannot create or migrate the opsbus tables (search_path"
                            f" {schema}): {exc}") from None


async def _migrate(conn: asyncpg.Connection) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                           LOCK_NAMESPACE)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS opsbus_migrations (version int PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row[0] for row in await conn.fetch("SELECT version FROM opsbus_migrations")}
        version = max(applied, default=0)
        for number, name, sql in migrations("postgres"):
            if number in applied:
                continue
            log.info("applying migration %s", name)
            await conn.execute(sql)  # one script: function bodies hold semicolons
            await conn.execute("INSERT INTO opsbus_migrations (version, name) VALUES ($1, $2)",
                               number, name)
            version = number
        return version
