"""Choosing and reaching a PostgreSQL store: URLs, session settings, the install hint,
and migrations that run once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.errors import InvalidConfig
from broker.store.postgres.connection import PgOptions, check_url, connect, is_postgres_url
from broker.store.postgres.migrate import migrate
from tests.pg_support import pg_url  # noqa: F401  (fixture)


def test_store_urls() -> None:
    assert is_postgres_url("postgresql://u@h:5432/db")
    assert is_postgres_url("postgres://u@h/db")
    assert not is_postgres_url("sqlite")
    check_url("postgresql://u@h:5432/db")
    with pytest.raises(InvalidConfig, match="must name a database"):
        check_url("postgresql://u@h:5432")
    with pytest.raises(InvalidConfig, match="postgresql:// URL"):
        check_url("mysql://u@h/db")


def test_session_settings_bound_a_stuck_writer_unless_the_url_sets_them() -> None:
    settings = PgOptions("postgresql://u@h/db?lock_timeout=900").session_settings()
    assert "lock_timeout" not in settings
    assert settings["idle_in_transaction_session_timeout"] == "15000"
    assert settings["statement_timeout"] == "30000"


def test_the_pool_size_comes_from_the_url_and_is_not_a_session_setting() -> None:
    options = PgOptions.from_url("postgresql://u@h/db?search_path=s&pool_size=3")
    assert options.pool_size == 3
    assert options.dsn == "postgresql://u@h/db?search_path=s"
    with pytest.raises(InvalidConfig, match="pool_size"):
        check_url("postgresql://u@h/db?pool_size=many")


def test_the_password_is_kept_out_of_messages() -> None:
    assert PgOptions("postgresql://u:secret@h/db").redacted() == "postgresql://u:***@h/db"


def test_a_missing_driver_names_the_install_command() -> None:
    code = ("import sys; sys.modules['asyncpg'] = None\n"
            "from broker.store.postgres.driver import asyncpg_module\n"
            "try:\n    asyncpg_module()\nexcept Exception as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'opsbus[postgres]'" in out


async def test_migrations_apply_once(pg_url: str) -> None:  # noqa: F811
    conn = await connect(PgOptions(pg_url))
    try:
        first = await migrate(conn)
        assert first >= 1
        assert await migrate(conn) == first
        assert await conn.fetchval("SELECT count(*) FROM opsbus_migrations") == first
    finally:
        await conn.close()


def test_bad_sources_and_targets_are_one_line_errors(tmp_path: Path) -> None:
    from tests.pg_support import PG_URL, with_schema

    (tmp_path / "opsbus.db").write_text("not a database")
    missing_schema = with_schema(PG_URL, "opsbus_no_such_schema")
    for args, message in (
        (["store", "copy", "--from", str(tmp_path), "--to", PG_URL],
         "is not an opsbus SQLite database"),
        (["store", "copy", "--from", str(tmp_path / "nowhere"), "--to", PG_URL],
         "no opsbus SQLite database"),
        (["serve", "--store", missing_schema, "--listen", "127.0.0.1:0", "--data-dir",
          str(tmp_path / "data")], "cannot create or migrate the opsbus tables"),
    ):
        done = subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


async def test_store_check_finds_nothing_wrong_in_a_fresh_log_and_backup_names_pg_dump(
    pg_url: str, tmp_path: Path  # noqa: F811
) -> None:
    from broker.errors import Conflict
    from broker.store.postgres.backend import PgBackend
    from tests.pg_writer import new_event

    store = PgBackend(PgOptions(pg_url, pool_size=2))
    await store.open()
    try:
        async with store.transaction() as tx:
            await store.events.writes(tx).append_many(
                [(e.event, e.raw, e.digest) for e in (new_event("check", n) for n in range(5))],
                "2026-11-25T10:00:00Z")
        report = await store.check()
        assert report.ok and report.events == 5 and report.last_seq == 5
        await store.maintain()
        assert store.storage_stats().db_bytes > 0
        with pytest.raises(Conflict, match="pg_dump"):
            await store.backup(tmp_path / "backup")
    finally:
        await store.close()
