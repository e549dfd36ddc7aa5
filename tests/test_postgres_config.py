"""A config file applied by several replicas on one database converges: the same file is
applied once however many replicas start with it or see it edited, and two different
files settle on one, deterministically and with a warning, never in a loop
(docs/postgres.md, section 6)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.broker_process import BrokerProcess
from tests.delivery_support import call, eventually
from tests.pg_support import PG_URL, create_schema, drop_schema, with_schema
from tests.test_postgres_replicas import CONFIG, start_replicas


@pytest.fixture
def database() -> Iterator[str]:
    schema = create_schema()
    try:
        yield with_schema(PG_URL, schema) + "&pool_size=3"
    finally:
        drop_schema(schema)


async def status(http: aiohttp.ClientSession, replica: BrokerProcess) -> dict[str, Any]:
    return await call(http, "GET", f"{replica.url}/v1/config/status", expect=200)


def route(name: str) -> str:
    return (f'\n[[routes]]\nname = "{name}"\nfilter = {{exact = {{type = "x.{name}"}}}}\n'
            'targets = ["queue:ops"]\n')


async def test_the_same_file_on_three_replicas_is_applied_once(
    tmp_path: Path, database: str, http: aiohttp.ClientSession
) -> None:
    replicas = start_replicas(tmp_path, database, test_clock=True)
    try:
        first = await status(http, replicas[0])
        applied = first["applied"]
        for replica in replicas:
            seen = await status(http, replica)
            # Started after the first with the same file: nothing rewritten, no warning.
            assert seen["applied"] == applied and seen["in_effect"], seen
            assert seen["warning"] is None
        # An edit of the shared file wakes every replica's watcher; one applies it.
        extra = f"r{uuid.uuid4().hex[:6]}"
        (tmp_path / "opsbus.toml").write_text(CONFIG + route(extra))

        async def everywhere() -> list[dict[str, Any]] | None:
            seen = [await status(http, r) for r in replicas]
            done = all(s["reloads"] == 1 and s["in_effect"] and s["applied"]["digest"]
                       != applied["digest"] for s in seen)
            return seen if done else None

        seen = await eventually(everywhere, timeout=20)
        # One new object: the version moved by exactly one, whoever applied it.
        assert {s["applied"]["version"] for s in seen} == {applied["version"] + 1}
        obj = await call(http, "GET", f"{replicas[2].url}/v1/routes/{extra}", expect=200)
        assert obj["version"] == applied["version"] + 1
        # Nothing keeps changing afterwards, whatever the replicas' polls see.
        for replica in replicas:
            await replica.advance(http, 5)
        assert [(await status(http, r))["applied"] for r in replicas] == [seen[0]["applied"]] * 3
    finally:
        for replica in replicas:
            replica.stop()


async def test_different_files_settle_on_one_with_a_warning(
    tmp_path: Path, database: str, http: aiohttp.ClientSession
) -> None:
    def replica(name: str, text: str, revision: str) -> BrokerProcess:
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "opsbus.toml"
        path.write_text(f'[server]\nconfig_revision = "{revision}"\n' + CONFIG + text)
        return BrokerProcess(folder / "data", config=path, test_clock=True,
                             args=["--store", database])

    new = replica("new", route("from_new"), "2026-11-29.2").start()
    old = replica("old", route("from_old"), "2026-11-29.1").start()
    try:
        # The straggler with the older file keeps the newer one in effect and says so.
        kept = await status(http, old)
        assert not kept["in_effect"] and "older" in kept["warning"], kept
        assert kept["applied"]["revision"] == "2026-11-29.2"
        await call(http, "GET", f"{old.url}/v1/routes/from_new", expect=200)
        await call(http, "GET", f"{old.url}/v1/routes/from_old", expect=404)
        assert (await status(http, new))["in_effect"]

        # An operator edits the old replica's file: that is applied (the last writer
        # wins) with a warning naming whose file it replaced.
        path = Path(old.config or "")
        path.write_text(path.read_text() + route("edited"))
        os.utime(path)

        async def edited() -> dict[str, Any] | None:
            seen = await status(http, old)
            return seen if seen["in_effect"] else None

        seen = await eventually(edited, timeout=20)
        assert "replaces" in seen["warning"] and seen["applied"]["revision"] == "2026-11-29.1"
        version = seen["applied"]["version"]

        async def new_sees_it() -> dict[str, Any] | None:
            found = await status(http, new)
            return found if found["applied"]["version"] == version else None

        other = await eventually(new_sees_it)
        assert other["in_effect"] is False
        await call(http, "GET", f"{new.url}/v1/routes/edited", expect=200)
        await call(http, "GET", f"{new.url}/v1/routes/from_new", expect=404)
        # No loop: the replica whose file lost re-reads, it does not re-apply.
        for proc in (new, old, new, old):
            await proc.advance(http, 5)
        assert (await status(http, new))["applied"]["version"] == version
        assert (await status(http, old))["applied"]["version"] == version
    finally:
        old.stop()
        new.stop()
