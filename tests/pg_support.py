"""PostgreSQL for tests: each test gets its own schema in the `test` database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

PG_URL = os.environ.get("OPSBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
"""The server the tests use (trust auth); `.ci/run` starts it when it is down."""


def with_schema(url: str, schema: str) -> str:
    """`url` whose sessions work in `schema` (asyncpg passes unknown query parameters
    as session settings)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"search_path": schema})) if q)
    return parts._replace(query=query).geturl()


async def admin_connection(url: str = PG_URL) -> object:
    import asyncpg

    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {url} ({exc}): start it"
                    " (.ci/run does) or point OPSBUS_TEST_PG at one")


async def create_schema_async(url: str = PG_URL) -> str:
    """A fresh, empty schema of its own for one test (or benchmark run) on `url`."""
    import asyncpg

    schema = f"opsbus_t_{uuid.uuid4().hex[:12]}"
    admin = await admin_connection(url)
    assert isinstance(admin, asyncpg.Connection)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    return schema


async def drop_schema_async(schema: str, url: str = PG_URL) -> None:
    import asyncpg

    admin = await admin_connection(url)
    assert isinstance(admin, asyncpg.Connection)
    try:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A store URL on a fresh, empty schema that is dropped after the test."""
    schema = await create_schema_async()
    try:
        yield with_schema(PG_URL, schema)
    finally:
        await drop_schema_async(schema)


def _run(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to completion from sync code, even inside a running event loop (a test
    that starts a broker process from an async test)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work)  # no loop here (also at interpreter exit, where threads are gone)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work).result()


def create_schema() -> str:
    """A fresh schema, made from sync code (module-scoped fixtures, broker processes)."""
    import asyncpg

    schema = f"opsbus_t_{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()

    _run(make())
    return schema


def drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()

    _run(drop())


_SCHEMAS: list[str] = []


def schema_for_process() -> str:
    """A store URL on a new schema, dropped when the test process exits."""
    import atexit

    if not _SCHEMAS:
        atexit.register(lambda: [drop_schema(s) for s in _SCHEMAS])
    schema = create_schema()
    _SCHEMAS.append(schema)
    # Small pools: many brokers share the test server's connection limit.
    return with_schema(PG_URL, schema) + "&pool_size=3"
