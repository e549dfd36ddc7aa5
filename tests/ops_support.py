"""Helpers for the operations tests: run the CLI, load stores, publish in bulk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson

from tests.broker_process import ROOT
from tests.conftest import BATCH, make_event

FIXTURES = Path(__file__).parent / "fixtures"


def opsbus(*args: str, cwd: Path | None = None, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`opsbus ARGS` from this tree, as a user runs it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)


def load_sql(sql_path: Path, db_path: Path) -> Path:
    """A database file made from a SQL dump (a store written by an earlier release)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.executescript(sql_path.read_text())
    finally:
        conn.close()
    return db_path


def read_db(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


async def publish_batch(session: aiohttp.ClientSession, url: str, n: int, *,
                        source: str = "tests/ops", size: int = 200, **attrs: object
                        ) -> list[int]:
    """Publish n events in one batch (each with ~size bytes of data); their seqs."""
    events = [make_event(source=source, data={"pad": "x" * size}, **attrs) for _ in range(n)]
    async with session.post(url + "/v1/events", data=orjson.dumps(events),
                            headers=BATCH) as resp:
        assert resp.status == 200, await resp.text()
        return [r["seq"] for r in await resp.json()]
