"""SQLite stores as an earlier release left them, for migration and copy tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from broker.store.migrations import migrations


def sqlite_store_before(path: Path, first_missing: str) -> sqlite3.Connection:
    """A store at `path` migrated up to, not including, the migration whose file name
    ends with `first_missing`; the connection is left open for rows to be added."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("opsbus_key64", -1, lambda *p: None)  # no rows yet
    for version, name, sql in migrations("sqlite"):
        if name.endswith(first_missing):
            break
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version={version}")
    return conn
